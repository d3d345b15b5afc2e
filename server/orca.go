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

// cpuWindow is the shortest window the CPU utilisation is measured over:
// a report asks for a new sample at most once per window.
const cpuWindow = time.Second

// loadReporter is the ORCA ServerMetricsProvider behind the per-call
// trailers and the OOB service: the user's server-wide metrics (app),
// overlaid with the process's CPU utilisation unless the user set one,
// and the calls in flight.
type loadReporter struct {
	app      orca.ServerMetricsRecorder
	inFlight atomic.Int64
	cpu      *cpuSampler
}

func newLoadReporter() *loadReporter {
	return &loadReporter{app: orca.NewServerMetricsRecorder(), cpu: newCPUSampler()}
}

// ServerMetrics implements orca.ServerMetricsProvider. It returns a new
// copy on every call, which orca's interceptor merges per-call metrics into.
func (l *loadReporter) ServerMetrics() *orca.ServerMetrics {
	sm := l.app.ServerMetrics() // a copy with non-nil maps
	if sm.CPUUtilization == -1 {
		if u, ok := l.cpu.utilization(); ok {
			sm.CPUUtilization = u
		}
	}
	sm.NamedMetrics[InFlightMetric] = float64(l.inFlight.Load())
	return sm
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
			l.inFlight.Add(1)
			defer l.inFlight.Add(-1)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if !counted(info.FullMethod) {
				return h(srv, ss)
			}
			orca.CallMetricsRecorderFromContext(ss.Context())
			l.inFlight.Add(1)
			defer l.inFlight.Add(-1)
			return h(srv, ss)
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

// cpuSampler measures the process's CPU utilisation: CPU time used
// (user and system, from getrusage) over wall time between two samples,
// divided by GOMAXPROCS (which follows a container's CPU limit), so 1
// means every CPU the process may use was busy. A new sample is taken
// when a report asks for one and the last is at least cpuWindow old;
// the value is the average since that last sample (the first: since
// New). Reads in between are two atomic loads.
type cpuSampler struct {
	start time.Time
	next  atomic.Int64  // time since start, in ns, when a new sample is due
	util  atomic.Uint64 // math.Float64bits of the last utilisation
	have  atomic.Bool   // util holds a measurement

	mu      sync.Mutex // guards the fields below; TryLock only, never waited for
	last    time.Duration
	lastCPU time.Duration
	ok      bool // last and lastCPU hold a sample
}

func newCPUSampler() *cpuSampler {
	c := &cpuSampler{start: time.Now()}
	c.lastCPU, c.ok = processCPU()
	return c
}

// utilization returns the CPU utilisation, and false where the platform
// cannot measure it (then no CPU utilisation is reported).
func (c *cpuSampler) utilization() (float64, bool) {
	now := time.Since(c.start)
	if int64(now) >= c.next.Load() && c.mu.TryLock() {
		cpu, ok := processCPU()
		if ok && c.ok && now > c.last {
			u := float64(cpu-c.lastCPU) / (float64(now-c.last) * float64(runtime.GOMAXPROCS(0)))
			c.util.Store(math.Float64bits(max(u, 0)))
			c.have.Store(true)
		}
		c.last, c.lastCPU, c.ok = now, cpu, ok
		c.next.Store(int64(now + cpuWindow))
		c.mu.Unlock()
	}
	if !c.have.Load() {
		return 0, false
	}
	return math.Float64frombits(c.util.Load()), true
}
