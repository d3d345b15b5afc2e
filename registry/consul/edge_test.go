package consul_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
)

// Protocol edge cases a real agent cannot be made to produce. These run
// in addition to the real-agent tests, never instead of them.

// answer is one scripted reply of the fake health endpoint.
type answer struct {
	status int
	body   string // JSON; "" means entries(ids...)
	ids    []string
	index  uint64
	hold   time.Duration // delay before answering a blocking query
	noIdx  bool          // send no X-Consul-Index header
}

type fakeConsul struct {
	*httptest.Server
	mu     sync.Mutex
	script func(n int, dc string) answer
	// consistent, if set, answers ?consistent reads instead of script.
	consistent func() answer
	reqs       []fakeReq
}

type fakeReq struct {
	dc         string
	index      string
	wait       string
	consistent bool
}

func newFake(t *testing.T, script func(n int, dc string) answer) *fakeConsul {
	f := &fakeConsul{script: script}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status/leader" {
			// The agent is up: the probe's leader check succeeds.
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `"127.0.0.1:8300"`)
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/v1/health/service/") {
			http.Error(w, "not in the script", 404)
			return
		}
		q := r.URL.Query()
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, fakeReq{dc: q.Get("dc"), index: q.Get("index"), wait: q.Get("wait"), consistent: q.Has("consistent")})
		consistent := f.consistent
		f.mu.Unlock()
		var a answer
		if consistent != nil && q.Has("consistent") {
			a = consistent()
		} else {
			a = f.script(n, q.Get("dc"))
		}
		if a.hold > 0 && q.Get("index") != "" {
			select {
			case <-time.After(a.hold):
			case <-r.Context().Done():
				return
			}
		}
		if !a.noIdx {
			w.Header().Set("X-Consul-Index", strconv.FormatUint(a.index, 10))
		}
		if a.status != 0 && a.status != 200 {
			http.Error(w, "scripted failure", a.status)
			return
		}
		body := a.body
		if body == "" {
			body = entries(a.ids...)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeConsul) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

func entries(ids ...string) string {
	var parts []string
	for i, id := range ids {
		parts = append(parts, fmt.Sprintf(`{"Node":{"Node":"n1","Address":"127.0.0.1"},"Service":{"ID":"svc:%s","Service":"svc","Address":"127.0.0.1","Port":%d,"Meta":{"wayfinder_id":%q}},"Checks":[]}`, id, 1000+i, id))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func fakeReg(t *testing.T, f *fakeConsul, opts ...consul.Option) *consul.Registry {
	return newReg(t, f.Listener.Addr().String(), append([]consul.Option{consul.WithBackoff(10*time.Millisecond, 50*time.Millisecond), consul.WithRateLimit(100)}, opts...)...)
}

// waitReqs waits until the fake has seen n requests.
func waitReqs(t *testing.T, f *fakeConsul, n int) []fakeReq {
	t.Helper()
	var r []fakeReq
	if !wait.Until(10*time.Second, func() bool { r = f.requests(); return len(r) >= n }) {
		t.Fatalf("fake Consul saw %d requests, want %d: %+v", len(r), n, r)
	}
	return r
}

func TestIndexGoesBackwards(t *testing.T) {
	f := newFake(t, func(n int, _ string) answer {
		switch n {
		case 0:
			return answer{ids: []string{"a"}, index: 100}
		case 1:
			return answer{ids: []string{"a", "b"}, index: 50} // a snapshot restore
		case 2:
			return answer{ids: []string{"a", "b"}, index: 60}
		}
		return answer{ids: []string{"a", "b"}, index: 60, hold: time.Hour}
	})
	w := mustWatch(t, fakeReg(t, f), "svc")
	nextUntil(t, w, 10*time.Second, "a and b", func(in []registry.Instance) bool { return sameIDs(in, "a", "b") })
	reqs := waitReqs(t, f, 4)
	want := []string{"", "100", "", "60"} // reset to a plain read after 50 < 100
	for i, w := range want {
		if reqs[i].index != w {
			t.Errorf("request %d index = %q, want %q (all: %+v)", i, reqs[i].index, w, reqs)
		}
	}
}

// TestNoGoingBackAfterRestart: a restarted Consul server answers
// default-mode reads from the state it restored from its last snapshot
// until it has applied the rest of its log, at a lower X-Consul-Index:
// the fault suite saw a client go back to [i0003 i0004 i0005], an
// instance deregistered seconds before included. After
// an error, or an index that went backwards, the watch confirms with a
// consistent read (which Consul refuses until the new leader has caught
// up) before it publishes, so it never goes back in time.
func TestNoGoingBackAfterRestart(t *testing.T) {
	for _, how := range []string{"after an error", "index backwards"} {
		t.Run(how, func(t *testing.T) {
			var mu sync.Mutex
			caughtUp := false
			f := newFake(t, func(n int, _ string) answer {
				switch {
				case n == 0:
					return answer{ids: []string{"a", "b"}, index: 100}
				case n == 1 && how == "after an error":
					return answer{status: 500, index: 100}
				}
				// The restored, older state, at a lower index.
				return answer{ids: []string{"old", "a"}, index: 50, hold: 50 * time.Millisecond}
			})
			f.mu.Lock()
			f.consistent = func() answer {
				mu.Lock()
				defer mu.Unlock()
				if !caughtUp {
					caughtUp = true
					return answer{status: 500, body: "Not ready to serve consistent reads", index: 50}
				}
				return answer{ids: []string{"a", "b", "c"}, index: 101, hold: time.Hour}
			}
			f.mu.Unlock()
			w := mustWatch(t, fakeReg(t, f), "svc")
			ctx := ctxT(t, 10*time.Second)
			for {
				got, err := w.Next(ctx)
				if ctx.Err() != nil {
					t.Fatalf("Next() never showed [a b c]: %v", err)
				}
				if err != nil {
					continue
				}
				if sameIDs(got, "a", "old") {
					t.Fatalf("Next() = %v: the restored, older state was published", ids(got))
				}
				if sameIDs(got, "a", "b", "c") {
					break
				}
			}
		})
	}
}

// TestIndexMissingOrZero: an answer without a usable X-Consul-Index (no
// header, or 0) is a protocol error: reported, logged, retried with
// backoff, never accepted and never a loop at the rate limit. (Consul
// itself never answers a health query with an index below 1.)
func TestIndexMissingOrZero(t *testing.T) {
	for _, mode := range []string{"missing", "zero"} {
		t.Run(mode, func(t *testing.T) {
			var mu sync.Mutex
			good := false
			f := newFake(t, func(n int, _ string) answer {
				mu.Lock()
				defer mu.Unlock()
				if good {
					return answer{ids: []string{"a", "b"}, index: 9, hold: time.Hour}
				}
				return answer{ids: []string{"a"}, index: 0, noIdx: mode == "missing"}
			})
			logs := &logBuffer{}
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer mp.Shutdown(context.Background())
			r := newReg(t, f.Listener.Addr().String(), consul.WithBackoff(200*time.Millisecond, 2*time.Second), consul.WithLogger(logs.logger()), consul.WithMeterProvider(mp))
			w := mustWatch(t, r, "svc")
			ctx := ctxT(t, 10*time.Second)
			got, err := w.Next(ctx)
			if !errors.Is(err, registry.ErrUnavailable) || got != nil || !strings.Contains(err.Error(), "X-Consul-Index") {
				t.Fatalf("first Next() with %s X-Consul-Index = %v, %v; want no set and ErrUnavailable naming X-Consul-Index", mode, ids(got), err)
			}
			const period = 3 * time.Second
			before, reqs := cctest.MetricSums(t, reader)["wayfinder.discovery.queries"], len(f.requests())
			nctx := ctxT(t, period)
			if got, err := w.Next(nctx); nctx.Err() == nil {
				t.Fatalf("Next() during the same protocol error = %v, %v; want to block (one error per outage)", ids(got), err)
			}
			// Backoff from 200ms doubling: about 4 reads by the watch in
			// 3s, where the rate limit alone would allow 30. The shared
			// probe adds at most one read per 250ms for the Registry.
			n := cctest.MetricSums(t, reader)["wayfinder.discovery.queries"] - before
			t.Logf("%s: %v reads by the watch, %d requests in all, in %v", mode, n, len(f.requests())-reqs, period)
			if n > 6 {
				t.Errorf("the watch made %v reads in %v after a protocol error, want at most 6: a hot loop", n, period)
			}
			if c := logs.count("level=WARN", "X-Consul-Index"); c != 1 {
				t.Errorf("%d Warn lines naming X-Consul-Index, want 1:\n%s", c, logs.String())
			}
			mu.Lock()
			good = true
			mu.Unlock()
			if got, err := w.Next(ctx); err != nil || !sameIDs(got, "a", "b") {
				t.Fatalf("Next() once the index is good = %v, %v; want [a b]", ids(got), err)
			}
		})
	}
}

// TestRecoveryUnder2s: once the agent answers well again, the watch
// shows it within 2s, however long its backoff has grown. The agent's
// leader check succeeds throughout (only the health endpoint fails), so
// waking on the leader check alone does not serve.
func TestRecoveryUnder2s(t *testing.T) {
	var mu sync.Mutex
	failing := false
	f := newFake(t, func(n int, _ string) answer {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case n == 0:
			return answer{ids: []string{"a"}, index: 10}
		case failing:
			return answer{status: 500, index: 10}
		}
		return answer{ids: []string{"a", "b"}, index: 11, hold: time.Hour}
	})
	mu.Lock()
	failing = true
	mu.Unlock()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	// The default backoff: 100ms doubling to 15s.
	w := mustWatch(t, newReg(t, f.Listener.Addr().String(), consul.WithMeterProvider(mp)), "svc")
	ctx := ctxT(t, 30*time.Second)
	if got, err := w.Next(ctx); err != nil || !sameIDs(got, "a") {
		t.Fatalf("first Next() = %v, %v; want [a]", ids(got), err)
	}
	if _, err := w.Next(ctx); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Next() after a 500 = %v; want ErrUnavailable", err)
	}
	// Seven failed reads by the watch (the probe's are not counted): its
	// backoff is now several seconds long.
	wait.For(t, 20*time.Second, "7 failed reads by the watch", func() bool {
		return cctest.MetricSums(t, reader)["wayfinder.discovery.query_errors"] >= 7
	})
	mu.Lock()
	failing = false
	mu.Unlock()
	back := time.Now()
	got, err := w.Next(ctx)
	if err != nil || !sameIDs(got, "a", "b") {
		t.Fatalf("Next() after recovery = %v, %v; want [a b]", ids(got), err)
	}
	took := time.Since(back)
	t.Logf("recovered %v after good answers resumed", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("recovered %v after good answers resumed, want ≤ 2s", took)
	}
}

// TestErrorKindChangeLogged: an outage whose error changes kind (500,
// then invalid JSON, then the wrong shape) logs each kind once at Warn,
// not only the first.
func TestErrorKindChangeLogged(t *testing.T) {
	f := newFake(t, func(n int, _ string) answer {
		switch {
		case n == 0:
			return answer{ids: []string{"a"}, index: 10}
		case n <= 5:
			return answer{status: 500, index: 10}
		case n <= 10:
			return answer{body: `<html>proxy error</html>`, index: 10}
		case n <= 15:
			return answer{body: `{"a":1}`, index: 10}
		}
		return answer{ids: []string{"a", "b"}, index: 12, hold: time.Hour}
	})
	logs := &logBuffer{}
	w := mustWatch(t, fakeReg(t, f, consul.WithLogger(logs.logger())), "svc")
	nextUntil(t, w, 10*time.Second, "a and b", func(in []registry.Instance) bool { return sameIDs(in, "a", "b") })
	warns := logs.count("level=WARN", "watch failing")
	for _, want := range []string{"500", "invalid character", "cannot unmarshal"} {
		if logs.count("level=WARN", want) != 1 {
			t.Errorf("Warn lines mentioning %q: %d, want 1", want, logs.count("level=WARN", want))
		}
	}
	if warns != 3 {
		t.Errorf("%d Warn lines for one outage of three kinds, want 3:\n%s", warns, logs.String())
	}
}

// logBuffer collects text log lines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count returns the number of lines containing every one of subs.
func (l *logBuffer) count(subs ...string) int {
	n := 0
	for line := range strings.SplitSeq(l.String(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

// TestReturnsAtOnceForever: a query that never blocks is held to the
// rate limit, burst 2, instead of spinning.
func TestReturnsAtOnceForever(t *testing.T) {
	const rate, period = 5.0, 2 * time.Second
	f := newFake(t, func(n int, _ string) answer { return answer{ids: []string{"a"}, index: 7} })
	w := mustWatch(t, fakeReg(t, f, consul.WithRateLimit(rate)), "svc")
	nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return sameIDs(in, "a") })
	start, before := time.Now(), len(f.requests())
	ctx := ctxT(t, period)
	if got, err := w.Next(ctx); err == nil {
		t.Fatalf("Next() with nothing changing = %v, want to block", ids(got))
	}
	n := len(f.requests()) - before
	if max := int(rate*time.Since(start).Seconds()) + 2; n > max {
		t.Errorf("%d requests in %v at rate %v/s, want at most %d", n, time.Since(start), rate, max)
	}
}

// TestChangesAnswerAtOnce: queries that follow a change of the set are
// not held to the rate limit of answers that changed nothing. At one
// query per 1,000 s after a quiet answer, five changes in a row, each
// read by the query after the previous one, still all arrive: with one
// limit for both, the third query would wait 1,000 s.
func TestChangesAnswerAtOnce(t *testing.T) {
	all := []string{"a", "b", "c", "d", "e", "f"}
	f := newFake(t, func(n int, _ string) answer {
		k := min(n+1, len(all))
		if n >= len(all) {
			return answer{ids: all, index: uint64(len(all)), hold: time.Minute} // settled: block
		}
		return answer{ids: all[:k], index: uint64(k)}
	})
	w := mustWatch(t, fakeReg(t, f, consul.WithRateLimit(0.001)), "svc")
	nextUntil(t, w, 20*time.Second, "all six", func(in []registry.Instance) bool { return sameIDs(in, all...) })
}

// TestChangeStormLimited: a set that changes on every query is still
// held to the limit of queries after a change (5 × the rate, burst 10).
func TestChangeStormLimited(t *testing.T) {
	const rate, period = 5.0, 2 * time.Second
	f := newFake(t, func(n int, _ string) answer {
		if n%2 == 0 {
			return answer{ids: []string{"a"}, index: uint64(n + 1)}
		}
		return answer{ids: []string{"a", "b"}, index: uint64(n + 1)}
	})
	w := mustWatch(t, fakeReg(t, f, consul.WithRateLimit(rate)), "svc")
	nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return len(in) > 0 })
	start, before := time.Now(), len(f.requests())
	ctx := ctxT(t, period)
	for ctx.Err() == nil {
		w.Next(ctx)
	}
	n := len(f.requests()) - before
	if max := int(5*rate*time.Since(start).Seconds()) + 10 + 2; n > max {
		t.Errorf("%d requests in %v with the set changing on each, want at most %d (5 × %v/s, burst 10)", n, time.Since(start), max, rate)
	}
}

// TestServerErrorsKeepLastSet: 500s and 429s are reported once, never as
// an empty set, and the next good read is returned even if unchanged.
func TestServerErrorsKeepLastSet(t *testing.T) {
	for _, code := range []int{500, 429, 503} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			f := newFake(t, func(n int, _ string) answer {
				switch {
				case n == 0:
					return answer{ids: []string{"a"}, index: 10}
				case n <= 4:
					return answer{status: code, index: 10}
				}
				return answer{ids: []string{"a"}, index: 11, hold: time.Hour}
			})
			w := mustWatch(t, fakeReg(t, f), "svc")
			ctx := ctxT(t, 10*time.Second)
			if got, err := w.Next(ctx); err != nil || !sameIDs(got, "a") {
				t.Fatalf("first Next() = %v, %v; want [a]", ids(got), err)
			}
			got, err := w.Next(ctx)
			if !errors.Is(err, registry.ErrUnavailable) || got != nil {
				t.Fatalf("Next() after a %d = %v, %v; want no set and ErrUnavailable", code, ids(got), err)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(code)) {
				t.Errorf("error %q does not name the status %d", err, code)
			}
			if got, err := w.Next(ctx); err != nil || !sameIDs(got, "a") {
				t.Fatalf("Next() after recovery = %v, %v; want the unchanged [a]", ids(got), err)
			}
			// Four failures were one episode: one error, no more.
			if n := len(waitReqs(t, f, 6)); n < 6 {
				t.Fatalf("requests = %d", n)
			}
		})
	}
}

// TestGarbageAnswers: malformed JSON and entries without a service are
// errors, not panics and not empty sets.
func TestGarbageAnswers(t *testing.T) {
	for name, body := range map[string]string{
		"truncated":  `[{"Node":`,
		"not json":   `<html>proxy error</html>`,
		"null entry": `[null]`,
		"wrong type": `{"a":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, func(n int, _ string) answer {
				switch n {
				case 0:
					return answer{ids: []string{"a"}, index: 10}
				case 1:
					return answer{body: body, index: 11}
				}
				return answer{ids: []string{"a", "b"}, index: 12, hold: time.Hour}
			})
			w := mustWatch(t, fakeReg(t, f), "svc")
			ctx := ctxT(t, 10*time.Second)
			if got, err := w.Next(ctx); err != nil || !sameIDs(got, "a") {
				t.Fatalf("first Next() = %v, %v", ids(got), err)
			}
			if got, err := w.Next(ctx); !errors.Is(err, registry.ErrUnavailable) {
				t.Fatalf("Next() after %s = %v, %v; want ErrUnavailable", name, ids(got), err)
			}
			if got, err := w.Next(ctx); err != nil || !sameIDs(got, "a", "b") {
				t.Fatalf("Next() after recovery = %v, %v", ids(got), err)
			}
		})
	}
}

// TestMultiDCIndependent: one blocking loop per datacenter, each with
// its own index and failures; a failing datacenter keeps its last set.
func TestMultiDCIndependent(t *testing.T) {
	var mu sync.Mutex
	dc2Down := false
	f := newFake(t, func(_ int, dc string) answer {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case dc == "dc1":
			return answer{ids: []string{"a"}, index: 1000, hold: time.Hour}
		case dc2Down:
			return answer{status: 500}
		}
		return answer{ids: []string{"b"}, index: 5, hold: 20 * time.Millisecond}
	})
	w := mustWatch(t, fakeReg(t, f, consul.WithDatacenters("dc1", "dc2")), "svc")
	ctx := ctxT(t, 10*time.Second)
	nextUntil(t, w, 10*time.Second, "a and b", func(in []registry.Instance) bool { return sameIDs(in, "a", "b") })
	mu.Lock()
	dc2Down = true
	mu.Unlock()
	got, err := w.Next(ctx)
	if !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), `dc "dc2"`) {
		t.Fatalf("Next() with dc2 failing = %v, %v; want an error naming dc2", ids(got), err)
	}
	mu.Lock()
	dc2Down = false
	mu.Unlock()
	if got, err := w.Next(ctx); err != nil || !sameIDs(got, "a", "b") {
		t.Fatalf("Next() after dc2 recovered = %v, %v; want a and b (dc1's set kept throughout)", ids(got), err)
	}
	for _, r := range f.requests() {
		if r.dc == "dc1" && r.index != "" && r.index != "1000" {
			t.Errorf("dc1 blocked on index %q, want its own 1000", r.index)
		}
		if r.dc == "dc2" && r.index == "1000" {
			t.Errorf("dc2 used dc1's index")
		}
	}
}

// TestHTTPTimeoutAboveWait: a client timeout shorter than the wait
// shortens the wait rather than cutting every long poll.
func TestHTTPTimeoutAboveWait(t *testing.T) {
	f := newFake(t, func(n int, _ string) answer { return answer{ids: []string{"a"}, index: 3, hold: time.Hour} })
	r := fakeReg(t, f, consul.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	w := mustWatch(t, r, "svc")
	nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return sameIDs(in, "a") })
	reqs := waitReqs(t, f, 2)
	d, err := time.ParseDuration(reqs[1].wait)
	if err != nil {
		t.Fatalf("wait = %q: %v", reqs[1].wait, err)
	}
	if d+d/16 >= 30*time.Second {
		t.Errorf("wait %v with jitter reaches the 30s client timeout", d)
	}
	// The default: a 5 minute wait.
	f2 := newFake(t, func(n int, _ string) answer { return answer{ids: []string{"a"}, index: 3, hold: time.Hour} })
	mustWatch(t, fakeReg(t, f2), "svc")
	if got := waitReqs(t, f2, 2)[1].wait; got != "300000ms" && got != "5m0s" {
		t.Errorf("default wait = %q, want 5m", got)
	}
}
