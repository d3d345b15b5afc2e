package xds_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

func adsClient(t *testing.T, addr string) discoverypb.AggregatedDiscoveryServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return discoverypb.NewAggregatedDiscoveryServiceClient(cc)
}

// endpointIDs reads the addresses of a ClusterLoadAssignment, by zone.
func endpointsByZone(t *testing.T, cla *endpointpb.ClusterLoadAssignment) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			m[l.GetLocality().GetZone()] = append(m[l.GetLocality().GetZone()], sa.GetAddress())
		}
	}
	return m
}

// TestDelta: a Delta ADS client gets the listener, cluster and endpoints
// of a service; zones become localities and weights carry through; an
// outage sends nothing, and after it a change arrives, so that no
// response ever carried an empty endpoint list.
func TestDelta(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	xreg := store.Open()
	t.Cleanup(func() { xreg.Close() })
	ctx := context.Background()
	for _, inst := range []registry.Instance{
		{ID: "a", Service: "hello", Address: "127.0.0.1:1001", Zone: "z1", Weight: 3},
		{ID: "b", Service: "hello", Address: "127.0.0.2:1002", Zone: "z2"},
	} {
		if err := reg.Register(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0")
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := adsClient(t, addr).DeltaAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corepb.Node{Id: "delta-test"}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType} {
		if err := st.Send(&discoverypb.DeltaDiscoveryRequest{Node: node, TypeUrl: typ, ResourceNamesSubscribe: []string{"hello"}}); err != nil {
			t.Fatal(err)
		}
	}
	// recv reads the next response and ACKs it.
	recv := func() *discoverypb.DeltaDiscoveryResponse {
		t.Helper()
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("Recv() = %v", err)
		}
		if err := st.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var lis listenerpb.Listener
	var cla endpointpb.ClusterLoadAssignment
	var gotCluster bool
	for !gotCluster || lis.GetName() == "" || cla.GetClusterName() == "" {
		resp := recv()
		for _, r := range resp.GetResources() {
			switch resp.GetTypeUrl() {
			case resourcev3.ListenerType:
				if err := r.GetResource().UnmarshalTo(&lis); err != nil {
					t.Fatal(err)
				}
			case resourcev3.ClusterType:
				gotCluster = r.GetName() == "hello"
			case resourcev3.EndpointType:
				if err := r.GetResource().UnmarshalTo(&cla); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var hcm hcmpb.HttpConnectionManager
	if err := lis.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
		t.Fatalf("listener's HCM: %v", err)
	}
	if got := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster(); got != "hello" {
		t.Errorf("route's cluster = %q, want hello", got)
	}
	if got, want := endpointsByZone(t, &cla), map[string][]string{"z1": {"127.0.0.1"}, "z2": {"127.0.0.2"}}; !equalZones(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
	for _, l := range cla.GetEndpoints() {
		want := uint32(1)
		if l.GetLocality().GetZone() == "z1" {
			want = 3
		}
		if l.GetLoadBalancingWeight().GetValue() != want || l.GetLbEndpoints()[0].GetLoadBalancingWeight().GetValue() != want {
			t.Errorf("zone %s: locality weight %d, endpoint weight %d, want %d", l.GetLocality().GetZone(), l.GetLoadBalancingWeight().GetValue(), l.GetLbEndpoints()[0].GetLoadBalancingWeight().GetValue(), want)
		}
	}

	xreg.SetOutage(errors.New("partition"))
	wait.For(t, 10*time.Second, "the outage to be seen", func() bool { return srv.Stats().Outages > 0 })
	if err := reg.Register(ctx, registry.Instance{ID: "c", Service: "hello", Address: "127.0.0.3:1003", Zone: "z1"}); err != nil {
		t.Fatal(err)
	}
	xreg.SetOutage(nil)
	// The next endpoints are those after the outage: the outage itself
	// sent nothing (an empty list would come first).
	for {
		resp := recv()
		if resp.GetTypeUrl() != resourcev3.EndpointType {
			continue
		}
		if len(resp.GetRemovedResources()) > 0 {
			t.Fatalf("endpoints removed: %v", resp.GetRemovedResources())
		}
		if err := resp.GetResources()[0].GetResource().UnmarshalTo(&cla); err != nil {
			t.Fatal(err)
		}
		got := endpointsByZone(t, &cla)
		if want := (map[string][]string{"z1": {"127.0.0.1", "127.0.0.3"}, "z2": {"127.0.0.2"}}); !equalZones(got, want) {
			t.Fatalf("endpoints after the outage = %v, want %v", got, want)
		}
		break
	}
}

func equalZones(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestNACK: a client's rejection is counted, and the server does not
// answer it with the same resource again.
func TestNACK(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	if err := reg.Register(context.Background(), registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1001"}); err != nil {
		t.Fatal(err)
	}
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := adsClient(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &discoverypb.DiscoveryRequest{Node: &corepb.Node{Id: "nack-test"}, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"hello"}}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	// The first response may come before the service's first set, empty.
	var resp *discoverypb.DiscoveryResponse
	for len(resp.GetResources()) == 0 {
		if resp, err = st.Recv(); err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResources()) == 0 {
			ack := &discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"hello"}, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			if err := st.Send(ack); err != nil {
				t.Fatal(err)
			}
		}
	}
	nack := &discoverypb.DiscoveryRequest{
		TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"hello"}, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "rejected by the test"},
	}
	if err := st.Send(nack); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the NACK to be counted", func() bool { return srv.Stats().NACKs == 1 })
	// A change is still sent: the client asks for the service still.
	if err := reg.Register(context.Background(), registry.Instance{ID: "b", Service: "hello", Address: "127.0.0.2:1002"}); err != nil {
		t.Fatal(err)
	}
	// An answer to the NACK itself carries no endpoints (for EDS, that
	// removes nothing); the change comes next.
	for {
		if resp, err = st.Recv(); err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResources()) > 0 {
			break
		}
		ack := &discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"hello"}, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := st.Send(ack); err != nil {
			t.Fatal(err)
		}
	}
	var cla endpointpb.ClusterLoadAssignment
	if err := resp.GetResources()[0].UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	if got := endpointsByZone(t, &cla)[""]; len(got) != 2 {
		t.Errorf("endpoints after the NACK and a Register = %v, want 2", got)
	}
}
