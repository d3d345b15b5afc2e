package xds_test

import (
	"context"
	"testing"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// csdsStatus returns what CSDS says of node's resource typ/name.
func csdsStatus(t *testing.T, c statuspb.ClientStatusDiscoveryServiceClient, node, typ, name string) *statuspb.ClientConfig_GenericXdsConfig {
	t.Helper()
	resp, err := c.FetchClientStatus(context.Background(), &statuspb.ClientStatusRequest{})
	if err != nil {
		t.Fatalf("FetchClientStatus() = %v", err)
	}
	for _, cc := range resp.GetConfig() {
		if cc.GetNode().GetId() != node {
			continue
		}
		for _, g := range cc.GetGenericXdsConfigs() {
			if g.GetTypeUrl() == typ && g.GetName() == name {
				return g
			}
		}
	}
	return nil
}

func csdsClient(t *testing.T, addr string) statuspb.ClientStatusDiscoveryServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return statuspb.NewClientStatusDiscoveryServiceClient(cc)
}

// TestCSDS: client status says, per node and resource, what was sent and
// whether the client accepted it (SYNCED) or rejected it (ERROR, with
// its message), for a raw ADS client and for grpc-go's xDS client.
func TestCSDS(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	ctx := context.Background()
	if err := reg.Register(ctx, registry.Instance{ID: "x", Service: "hello", Address: "127.0.0.1:1001"}); err != nil {
		t.Fatal(err)
	}
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0")
	status := csdsClient(t, addr)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := adsClient(t, addr).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoverypb.DiscoveryRequest{Node: &corepb.Node{Id: "raw"}, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"hello"}}); err != nil {
		t.Fatal(err)
	}
	answer := func(resp *discoverypb.DiscoveryResponse, version string, nack bool) {
		t.Helper()
		req := &discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"hello"}, VersionInfo: version, ResponseNonce: resp.GetNonce()}
		if nack {
			req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: "bad endpoints"}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	var resp *discoverypb.DiscoveryResponse
	for len(resp.GetResources()) == 0 {
		if resp, err = st.Recv(); err != nil {
			t.Fatal(err)
		}
		answer(resp, resp.GetVersionInfo(), false)
	}
	good := resp.GetVersionInfo()
	wait.For(t, 10*time.Second, "CSDS to show the raw client SYNCED", func() bool {
		g := csdsStatus(t, status, "raw", resourcev3.EndpointType, "hello")
		return g.GetConfigStatus() == statuspb.ConfigStatus_SYNCED && g.GetVersionInfo() == good && g.GetXdsConfig() != nil
	})

	if err := reg.Register(ctx, registry.Instance{ID: "y", Service: "hello", Address: "127.0.0.2:1002"}); err != nil {
		t.Fatal(err)
	}
	if resp, err = st.Recv(); err != nil {
		t.Fatal(err)
	}
	answer(resp, good, true)
	wait.For(t, 10*time.Second, "CSDS to show the raw client's NACK", func() bool {
		g := csdsStatus(t, status, "raw", resourcev3.EndpointType, "hello")
		return g.GetConfigStatus() == statuspb.ConfigStatus_ERROR && g.GetErrorState().GetDetails() == "bad endpoints" && g.GetVersionInfo() == good
	})
	var found bool
	for _, c := range srv.Clients() {
		for _, ts := range c.Types {
			found = found || (c.Node == "raw" && ts.NACK == "bad endpoints" && ts.Acked == good)
		}
	}
	if !found {
		t.Errorf("Clients() = %+v, want the raw client's NACK", srv.Clients())
	}

	// grpc-go's client accepts what it is sent.
	startHello(t, reg, "a")
	c := startClient(t, "go", addr)
	c.waitPicks(t, 0, "a")
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType} {
		wait.For(t, 10*time.Second, "CSDS to show the go client SYNCED on "+typ, func() bool {
			return csdsStatus(t, status, "go", typ, "hello").GetConfigStatus() == statuspb.ConfigStatus_SYNCED
		})
	}
}
