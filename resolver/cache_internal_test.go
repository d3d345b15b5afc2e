package resolver

import (
	"net/url"
	"testing"

	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	_ "github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// nopCC is the least a resolver needs to run.
type nopCC struct{ gresolver.ClientConn }

func (nopCC) UpdateState(gresolver.State) error                    { return nil }
func (nopCC) ReportError(error)                                    {}
func (nopCC) ParseServiceConfig(string) *serviceconfig.ParseResult { return nil }

// Resolvers closed after Cache.Close must not stop their watches and
// release their registry a second time: the registry's reference count
// would go negative (it did: -2 here).
func TestCloseAfterCacheClose(t *testing.T) {
	for _, linger := range []int{0, 1} {
		c := NewCache(WithLinger(0))
		if linger == 1 {
			c = NewCache() // the default linger
		}
		b := URLBuilder("mem", WithCache(c))
		var rs []gresolver.Resolver
		for _, svc := range []string{"a", "b"} {
			u, _ := url.Parse("mem://close-after/" + svc)
			r, err := b.Build(gresolver.Target{URL: *u}, nopCC{}, gresolver.BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		c.mu.Lock()
		var reg *openRegistry
		for _, r := range c.regs {
			reg = r
		}
		c.mu.Unlock()
		if reg == nil || reg.refs != 2 {
			t.Fatalf("before Close: registry = %+v, want 2 references", reg)
		}
		c.Close()
		for _, r := range rs {
			r.Close()
		}
		c.mu.Lock()
		refs := reg.refs
		c.mu.Unlock()
		if refs != 0 {
			t.Errorf("linger %d: registry references after Cache.Close and the resolvers' Close = %d, want 0", linger, refs)
		}
	}
}
