package hash_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mapKeys calls once per key with conc goroutines and returns where each
// key landed.
func mapKeys(t *testing.T, c hellopb.HelloServiceClient, keys []string, conc int) []string {
	t.Helper()
	out := make([]string, len(keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range conc {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(keys)); i = next.Add(1) - 1 {
				name, err := lbtest.Call(hash.WithKey(context.Background(), keys[i]), c)
				if err != nil {
					failed.Add(1)
				}
				out[i] = name
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed", n, len(keys))
	}
	return out
}

// TestStableAndMinimalRemap: the same key always lands on the same
// backend; removing one of 10 backends remaps at most 15% of 10,000 keys
// (only the removed backend's, in fact), and no call fails meanwhile.
func TestStableAndMinimalRemap(t *testing.T) {
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 10)
	for _, b := range bs {
		env.Register(lbtest.Instance(b))
	}
	_, client := env.Dial(`{"wayfinder_consistent_hash":{}}`)
	lbtest.WaitServing(t, client, bs...)

	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	first := mapKeys(t, client, keys, 8)
	again := mapKeys(t, client, keys[:1000], 8)
	for i := range again {
		if again[i] != first[i] {
			t.Fatalf("key %q went to %s, then to %s", keys[i], first[i], again[i])
		}
	}
	per := map[string]int{}
	for _, b := range first {
		per[b]++
	}
	for _, b := range bs {
		if per[b.Name] < 500 || per[b.Name] > 1500 {
			t.Errorf("backend %s owns %d of 10000 keys, want about 1000: %v", b.Name, per[b.Name], per)
		}
	}

	// Calls keep flowing while b3 leaves the registry.
	stop := make(chan struct{})
	var during, failures atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := lbtest.Call(hash.WithKey(context.Background(), keys[i%len(keys)]), client); err != nil {
					failures.Add(1)
				}
				during.Add(1)
			}
		})
	}
	removed := bs[3]
	env.Deregister(lbtest.Instance(removed))
	var b3key string
	for i, b := range first {
		if b == removed.Name {
			b3key = keys[i]
			break
		}
	}
	wait.For(t, 10*time.Second, "the picker to drop "+removed.Name, func() bool {
		name, err := lbtest.Call(hash.WithKey(context.Background(), b3key), client)
		return err == nil && name != removed.Name
	})
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed while a backend was removed", n, during.Load())
	}
	removed.Stop()

	after := mapKeys(t, client, keys, 8)
	moved, movedOther := 0, 0
	for i := range keys {
		if after[i] != first[i] {
			moved++
			if first[i] != removed.Name {
				movedOther++
			}
		}
		if after[i] == removed.Name {
			t.Fatalf("key %q still went to the removed backend", keys[i])
		}
	}
	if moved > 1500 || movedOther > 0 {
		t.Errorf("removing 1 of 10 backends remapped %d of 10000 keys (%d not owned by it), want <= 1500 and 0", moved, movedOther)
	}
	t.Logf("remapped %d of 10000 keys (%.1f%%)", moved, float64(moved)/100)
}

func harness(t *testing.T, cfg string, insts []registry.Instance) (*fakecc.Harness, map[gbalancer.SubConn]string) {
	t.Helper()
	h, err := fakecc.Build(hash.Name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.Update(instance.Endpoints(insts)); err != nil {
		t.Fatal(err)
	}
	h.ReadyAll()
	names := map[gbalancer.SubConn]string{}
	for _, sc := range h.CC.SubConns() {
		names[sc] = sc.Addr
	}
	return h, names
}

func insts(weights ...int) []registry.Instance {
	out := make([]registry.Instance, len(weights))
	for i, w := range weights {
		out[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w}
	}
	return out
}

// TestWeights: with weights 1:3, a quarter of the keys go to the first.
func TestWeights(t *testing.T) {
	h, names := harness(t, "", insts(1, 3))
	p, _ := h.CC.Picker()
	n := map[string]int{}
	for i := range 20000 {
		r, err := p.Pick(gbalancer.PickInfo{Ctx: hash.WithKey(context.Background(), fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		n[names[r.SubConn]]++
	}
	if got := n["10.0.0.1:80"]; got < 4000 || got > 6000 {
		t.Errorf("weight 1 of 1:3 got %d of 20000 keys, want about 5000: %v", got, n)
	}
}

// TestHeaderKeyAndMissingKey: the key can come from a header; without a
// key the call fails in "fail" mode.
func TestHeaderKeyAndMissingKey(t *testing.T) {
	h, names := harness(t, `{"header":"x-user","missingKey":"fail"}`, insts(1, 1, 1, 1))
	p, _ := h.CC.Picker()
	ctxKey := hash.WithKey(context.Background(), "alice")
	ctxHdr := metadata.AppendToOutgoingContext(context.Background(), "x-user", "alice")
	r1, err1 := p.Pick(gbalancer.PickInfo{Ctx: ctxKey})
	r2, err2 := p.Pick(gbalancer.PickInfo{Ctx: ctxHdr})
	if err1 != nil || err2 != nil || names[r1.SubConn] != names[r2.SubConn] {
		t.Errorf("key from context -> %s, %v; from header -> %s, %v; want the same endpoint", names[r1.SubConn], err1, names[r2.SubConn], err2)
	}
	if _, err := p.Pick(gbalancer.PickInfo{Ctx: context.Background()}); status.Code(err) != codes.Internal {
		t.Errorf("Pick() without key in fail mode = %v, want INTERNAL", err)
	}
}

// TestNotReadyFallsThrough: a key whose endpoint fails goes to the next
// ready endpoint, and comes back when it is ready again.
func TestNotReadyFallsThrough(t *testing.T) {
	h, names := harness(t, "", insts(1, 1, 1))
	pick := func() string {
		p, _ := h.CC.Picker()
		r, err := p.Pick(gbalancer.PickInfo{Ctx: hash.WithKey(context.Background(), "k")})
		if err != nil {
			t.Fatal(err)
		}
		return names[r.SubConn]
	}
	home := pick()
	h.Fail(home)
	if got := pick(); got == home {
		t.Fatalf("key still picks failed endpoint %s", home)
	}
	h.ReadyAll()
	// ReadyAll made new SubConns for the reconnect; refresh the names.
	for _, sc := range h.CC.SubConns() {
		names[sc] = sc.Addr
	}
	if got := pick(); got != home {
		t.Fatalf("key picks %s after %s recovered, want %s", got, home, home)
	}
}

// TestBoundedLoad: a single hot key spreads once its endpoint carries
// more than loadFactor times the mean in-flight load.
func TestBoundedLoad(t *testing.T) {
	h, names := harness(t, `{"loadFactor":1.25}`, insts(1, 1, 1, 1))
	p, _ := h.CC.Picker()
	ctx := hash.WithKey(context.Background(), "hot")
	n := map[string]int{}
	var dones []func(gbalancer.DoneInfo)
	for range 100 {
		r, err := p.Pick(gbalancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatal(err)
		}
		n[names[r.SubConn]]++
		dones = append(dones, r.Done)
	}
	for addr, c := range n {
		if c > 33 { // ceil(1.25 * 100/4) + 1
			t.Errorf("endpoint %s holds %d of 100 in-flight calls of one key, want <= 33: %v", addr, c, n)
		}
	}
	for _, d := range dones {
		d(gbalancer.DoneInfo{})
	}
	// With nothing in flight, the key goes home again.
	first := ""
	for range 3 {
		r, _ := p.Pick(gbalancer.PickInfo{Ctx: ctx})
		if first == "" {
			first = names[r.SubConn]
		}
		if names[r.SubConn] != first {
			t.Fatalf("sequential calls of one key with nothing in flight spread: %s then %s", first, names[r.SubConn])
		}
		r.Done(gbalancer.DoneInfo{})
	}
}

var parseSeeds = []string{``, `{}`, `{"header":"x-user"}`, `{"header":"X-User"}`, `{"header":"grpc-x"}`, `{"header":"a-bin"}`,
	`{"replicas":0}`, `{"replicas":1001}`, `{"maxRingSize":0}`, `{"loadFactor":0.5}`, `{"loadFactor":1.25}`,
	`{"missingKey":"drop"}`, `{"missingKey":"fail"}`, `{"replica":5}`, `{"loadFactor":"x"}`}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct{ in, field string }{
		{`{"header":"X-User"}`, "header"},
		{`{"header":"grpc-x"}`, "header"},
		{`{"header":"a b"}`, "header"},
		{`{"replicas":0}`, "replicas"},
		{`{"replicas":-5}`, "replicas"},
		{`{"maxRingSize":0}`, "maxRingSize"},
		{`{"loadFactor":0.5}`, "loadFactor"},
		{`{"loadFactor":-1}`, "loadFactor"},
		{`{"missingKey":"drop"}`, "missingKey"},
		{`{"replica":5}`, "replica"},
	} {
		_, err := hash.ParseConfig([]byte(tc.in))
		var ce *wbalancer.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || ce.Policy != hash.Name {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError for field %q", tc.in, err, tc.field)
		}
	}
	cfg, err := hash.ParseConfig([]byte(`{"header":"x-user","loadFactor":1.25}`))
	if err != nil || cfg.Replicas != hash.DefaultReplicas || cfg.MissingKey != "random" {
		t.Errorf("ParseConfig(valid) = %+v, %v", cfg, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		cfg, err := hash.ParseConfig([]byte(js))
		if err != nil {
			if !strings.HasPrefix(err.Error(), hash.Name+": ") || !errors.Is(err, wbalancer.ErrInvalidConfig) {
				t.Fatalf("ParseConfig(%q) error %q does not name the policy or wrap ErrInvalidConfig", js, err)
			}
			return
		}
		if cfg.Replicas < 1 || cfg.MaxRingSize < 1 || (cfg.LoadFactor != 0 && cfg.LoadFactor < 1) {
			t.Fatalf("ParseConfig(%q) accepted %+v", js, cfg)
		}
	})
}

// TestPickAllocs pins the allocations the package doc promises: none for
// a key from WithKey, one (the 16-byte copy metadata.ValueFromOutgoingContext
// makes, grpc offering no public way to read outgoing metadata in place)
// for a key from a header, set or appended.
func TestPickAllocs(t *testing.T) {
	h, _ := harness(t, `{"header":"x-user"}`, insts(1, 1, 1, 1))
	p, _ := h.CC.Picker()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want float64
	}{
		{"WithKey", hash.WithKey(context.Background(), "alice"), 0},
		{"NewOutgoingContext", metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-user", "alice")), 1},
		{"AppendToOutgoingContext", metadata.AppendToOutgoingContext(context.Background(), "x-user", "alice"), 1},
	} {
		info := gbalancer.PickInfo{Ctx: tc.ctx}
		got := testing.AllocsPerRun(1000, func() {
			if _, err := p.Pick(info); err != nil {
				t.Fatal(err)
			}
		})
		if got != tc.want {
			t.Errorf("Pick(key from %s) allocates %v times, want %v", tc.name, got, tc.want)
		}
	}
}
