package server

import (
	"context"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/orca"
)

// InFlightMetric is the ORCA named metric under which a server started
// with WithLoadReports reports its calls in flight: the unary and
// streaming calls its handlers are running, not counting the
// grpc.health.v1, ORCA and reflection streams. In a per-call trailer it
// is the count when the call ended, without that call.
const InFlightMetric = "in_flight"

// rateWindow is the shortest window a rate (CPU, queries, errors per
// second) is measured over: a report asks for a new sample at most once
// per window.
const rateWindow = time.Second

// loadReporter is the ORCA ServerMetricsProvider behind the per-call
// trailers and the OOB service: the user's server-wide metrics (app),
// overlaid, each unless the user set it, with the process's CPU
// utilisation and the rates of calls and failed calls (rps_fractional
// and eps, which gRFC A58's weighted_round_robin needs: it ignores a
// report without a rate), and the calls in flight.
type loadReporter struct {
	app           orca.ServerMetricsRecorder
	inFlight      atomic.Int64
	calls, failed atomic.Int64 // calls ended, and of those with an error
	cpu, qps, eps *rateSampler
}

func newLoadReporter() *loadReporter {
	l := &loadReporter{app: orca.NewServerMetricsRecorder()}
	l.cpu = newRateSampler(func() (float64, bool) {
		t, ok := processCPU()
		return t.Seconds(), ok
	})
	l.qps = newRateSampler(func() (float64, bool) { return float64(l.calls.Load()), true })
	l.eps = newRateSampler(func() (float64, bool) { return float64(l.failed.Load()), true })
	return l
}

// ServerMetrics implements orca.ServerMetricsProvider. It returns a new
// copy on every call, which orca's interceptor merges per-call metrics into.
func (l *loadReporter) ServerMetrics() *orca.ServerMetrics {
	sm := l.app.ServerMetrics() // a copy with non-nil maps
	if sm.CPUUtilization == -1 {
		if u, ok := l.cpu.rate(); ok {
			// GOMAXPROCS follows a container's CPU limit: 1 means every
			// CPU the process may use was busy.
			sm.CPUUtilization = u / float64(runtime.GOMAXPROCS(0))
		}
	}
	if sm.QPS == -1 {
		if r, ok := l.qps.rate(); ok {
			sm.QPS = r
		}
	}
	if sm.EPS == -1 {
		if r, ok := l.eps.rate(); ok {
			sm.EPS = r
		}
	}
	sm.NamedMetrics[InFlightMetric] = float64(l.inFlight.Load())
	return sm
}

// begin counts a call in flight; end, with the handler's error, counts
// it ended.
func (l *loadReporter) begin() { l.inFlight.Add(1) }

func (l *loadReporter) end(err error) {
	l.inFlight.Add(-1)
	l.calls.Add(1)
	if err != nil {
		l.failed.Add(1)
	}
}

// serverOptions are the grpc.ServerOptions that record and serve the
// reports; they go before the user's. orca's interceptor is the outer
// one, so that counted's context holds the call's recorder; counted asks
// for it, so that every call's trailer carries a report, not only those
// whose handler recorded something.
func (l *loadReporter) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		orca.CallMetricsServerOption(l),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if !counted(info.FullMethod) {
				return h(ctx, req)
			}
			orca.CallMetricsRecorderFromContext(ctx)
			l.begin()
			resp, err := h(ctx, req)
			l.end(err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if !counted(info.FullMethod) {
				return h(srv, ss)
			}
			orca.CallMetricsRecorderFromContext(ss.Context())
			l.begin()
			err := h(srv, ss)
			l.end(err)
			return err
		}),
	}
}

// counted reports whether a method's calls count as load: the health,
// ORCA and reflection services' are the infrastructure's, and their
// watches and streams last as long as the connection.
func counted(fullMethod string) bool {
	return !strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") &&
		!strings.HasPrefix(fullMethod, "/xds.service.orca.v3.OpenRcaService/") &&
		!strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// rateSampler measures how fast a cumulative value grows, per second:
// the process's CPU time, calls ended. A new sample is taken when a
// report asks for one and the last is at least rateWindow old; the value
// is the average since that last sample (the first: since New). Reads in
// between are two atomic loads.
type rateSampler struct {
	read  func() (float64, bool)
	start time.Time
	next  atomic.Int64  // time since start, in ns, when a new sample is due
	val   atomic.Uint64 // math.Float64bits of the last rate
	have  atomic.Bool   // val holds a measurement

	mu      sync.Mutex // guards the fields below; TryLock only, never waited for
	last    time.Duration
	lastVal float64
	ok      bool // last and lastVal hold a sample
}

func newRateSampler(read func() (float64, bool)) *rateSampler {
	r := &rateSampler{read: read, start: time.Now()}
	r.lastVal, r.ok = read()
	return r
}

// rate returns the rate, and false where the platform cannot measure the
// value (then none is reported).
func (r *rateSampler) rate() (float64, bool) {
	now := time.Since(r.start)
	if int64(now) >= r.next.Load() && r.mu.TryLock() {
		v, ok := r.read()
		if ok && r.ok && now > r.last {
			r.val.Store(math.Float64bits(max((v-r.lastVal)/(now-r.last).Seconds(), 0)))
			r.have.Store(true)
		}
		r.last, r.lastVal, r.ok = now, v, ok
		r.next.Store(int64(now + rateWindow))
		r.mu.Unlock()
	}
	if !r.have.Load() {
		return 0, false
	}
	return math.Float64frombits(r.val.Load()), true
}
