package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// A raw client is one ADS stream on a connection of its own, as one
// client process would hold, that asks for the listener, cluster and
// endpoints of its services and acknowledges every response; it decodes
// each ClusterLoadAssignment and reports its endpoint count to a
// tracker. It is what a gRPC client's xDS client does on the wire,
// without the channel, the policies or the connections to endpoints.

// tracker waits for a change to reach every raw client.
type tracker struct {
	mu      sync.Mutex
	service string
	want    int // endpoints the clients must see
	start   time.Time
	lat     []time.Duration // when each client saw it
	bytes   int64           // EDS response bytes (proto.Size) the clients received since expect
	done    chan struct{}
	clients int
	err     error
}

// expect starts waiting for n clients to see want endpoints in service.
func (t *tracker) expect(service string, want, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.service, t.want, t.clients = service, want, n
	t.start, t.lat, t.bytes, t.done = time.Now(), nil, 0, make(chan struct{})
}

func (t *tracker) seen(c *rawClient, service string, now int, size int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	before := c.counts[service]
	c.counts[service] = now
	t.bytes += int64(size)
	if t.done == nil || service != t.service || now != t.want || before == now {
		return
	}
	t.lat = append(t.lat, time.Since(t.start))
	if len(t.lat) == t.clients {
		close(t.done)
	}
}

func (t *tracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
}

// wait waits for every client to see the change, and returns when each
// did and the EDS bytes they received.
func (t *tracker) wait(limit time.Duration) ([]time.Duration, int64, error) {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	select {
	case <-done:
	case <-time.After(limit):
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return nil, 0, t.err
	}
	if len(t.lat) < t.clients {
		return nil, 0, fmt.Errorf("%d of %d clients saw %d endpoints of %s within %v", len(t.lat), t.clients, t.want, t.service, limit)
	}
	return t.lat, t.bytes, nil
}

// allSee reports whether every client sees n endpoints in every
// service.
func (t *tracker) allSee(clients []*rawClient, services []string, n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range clients {
		for _, s := range services {
			if c.counts[s] != n {
				return false
			}
		}
	}
	return true
}

type rawClient struct {
	cc     *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
	counts map[string]int // endpoints by service; guarded by the tracker's mu
}

var adsTypes = []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType}

// startRaw opens a raw client's stream to addr, State of the World or
// Delta, asking for services.
func startRaw(addr, node string, services []string, delta bool, t *tracker) (*rawClient, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &rawClient{cc: cc, cancel: cancel, done: make(chan struct{}), counts: map[string]int{}}
	ads := discoverypb.NewAggregatedDiscoveryServiceClient(cc)
	n := &corepb.Node{Id: node}
	var run func() error
	if delta {
		s, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			cancel()
			cc.Close()
			return nil, err
		}
		for _, typ := range adsTypes {
			if err := s.Send(&discoverypb.DeltaDiscoveryRequest{Node: n, TypeUrl: typ, ResourceNamesSubscribe: services}); err != nil {
				cancel()
				cc.Close()
				return nil, err
			}
		}
		run = func() error {
			for {
				resp, err := s.Recv()
				if err != nil {
					return err
				}
				if resp.GetTypeUrl() == resourcev3.EndpointType {
					size := proto.Size(resp)
					for _, r := range resp.GetResources() {
						if err := c.endpoints(r.GetResource(), size, t); err != nil {
							return err
						}
						size = 0
					}
				}
				if err := s.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
					return err
				}
			}
		}
	} else {
		s, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			cancel()
			cc.Close()
			return nil, err
		}
		for _, typ := range adsTypes {
			if err := s.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: typ, ResourceNames: services}); err != nil {
				cancel()
				cc.Close()
				return nil, err
			}
		}
		run = func() error {
			for {
				resp, err := s.Recv()
				if err != nil {
					return err
				}
				if resp.GetTypeUrl() == resourcev3.EndpointType {
					size := proto.Size(resp)
					for _, r := range resp.GetResources() {
						if err := c.endpoints(r, size, t); err != nil {
							return err
						}
						size = 0
					}
				}
				if err := s.Send(&discoverypb.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: services,
					VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
					return err
				}
			}
		}
	}
	go func() {
		defer close(c.done)
		if err := run(); err != nil && ctx.Err() == nil && !errors.Is(err, io.EOF) {
			t.fail(fmt.Errorf("raw client %s: %w", node, err))
		}
	}()
	return c, nil
}

// endpoints decodes one ClusterLoadAssignment and reports its count.
func (c *rawClient) endpoints(a *anypb.Any, size int, t *tracker) error {
	var cla endpointpb.ClusterLoadAssignment
	if err := a.UnmarshalTo(&cla); err != nil {
		return err
	}
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	t.seen(c, cla.GetClusterName(), n, size)
	return nil
}

func (c *rawClient) stop() {
	c.cancel()
	<-c.done
	c.cc.Close()
}
