package harness

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	gresolver "google.golang.org/grpc/resolver"
)

// blockingScheme is the target scheme of the blocking-query baseline.
const blockingScheme = "consulblocking"

// blockingBuilder is the Consul baseline that shares nothing: a gRPC
// resolver that, like the popular Consul resolvers for grpc-go, runs one
// blocking query loop per ClientConn on /v1/health/service/<name>
// (passing only, WaitIndex from the last answer's X-Consul-Index, the
// same wait as Wayfinder's driver) and hands gRPC every answer it gets,
// changed or not. Wayfinder shares one such loop per service among all
// ClientConns of a process (resolver.Cache) and pushes only changes.
// Each ClientConn's loop holds one HTTP request open.
type blockingBuilder struct {
	client *api.Client
	wait   time.Duration
	open   atomic.Int64 // resolvers running
	pushes atomic.Int64 // UpdateState calls
}

func newBlockingBuilder(addr string, wait time.Duration) (*blockingBuilder, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &blockingBuilder{client: c, wait: wait}, nil
}

func (b *blockingBuilder) Scheme() string { return blockingScheme }

// Build starts the resolver's one goroutine; Close cancels and waits.
func (b *blockingBuilder) Build(t gresolver.Target, cc gresolver.ClientConn, _ gresolver.BuildOptions) (gresolver.Resolver, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &blockingResolver{cancel: cancel}
	b.open.Add(1)
	r.wg.Go(func() {
		defer b.open.Add(-1)
		b.loop(ctx, t.Endpoint(), cc)
	})
	return r, nil
}

func (b *blockingBuilder) loop(ctx context.Context, svc string, cc gresolver.ClientConn) {
	var index uint64
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: b.wait}).WithContext(ctx)
		entries, meta, err := b.client.Health().Service(svc, "", true, q)
		if err != nil {
			if ctx.Err() == nil {
				cc.ReportError(err)
			}
			sleep(ctx, time.Second)
			continue
		}
		if meta.LastIndex < index {
			index = 0 // the index went backwards: start over (Consul's advice)
		} else {
			index = meta.LastIndex
		}
		var st gresolver.State
		for _, e := range entries {
			host := e.Service.Address
			if host == "" {
				host = e.Node.Address
			}
			st.Addresses = append(st.Addresses, gresolver.Address{Addr: net.JoinHostPort(host, strconv.Itoa(e.Service.Port))})
		}
		b.pushes.Add(1)
		cc.UpdateState(st)
	}
}

type blockingResolver struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (*blockingResolver) ResolveNow(gresolver.ResolveNowOptions) {}

func (r *blockingResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
