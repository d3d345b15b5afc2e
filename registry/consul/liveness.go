package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

var (
	// errSilent ends a query that the agent has not answered within the
	// liveness bound (WithUnavailableAfter).
	errSilent = errors.New("no answer from the agent")
	// errProtocol is an answer that breaks Consul's protocol, such as one
	// without X-Consul-Index.
	errProtocol = errors.New("protocol error")
)

// errKind classifies a failed read for logging: an outage is logged at
// Warn again when its kind changes.
func errKind(err error) string {
	var se api.StatusError
	var syn *json.SyntaxError
	var ute *json.UnmarshalTypeError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return "http " + strconv.Itoa(se.Code)
	case errors.Is(err, errSilent):
		return "silent"
	case errors.Is(err, errProtocol):
		return "protocol"
	case errors.As(err, &syn):
		return "invalid json"
	case errors.As(err, &ute):
		return "wrong shape"
	case errors.As(err, &ne):
		return "network"
	}
	return "other"
}

// liveness keeps the bound of WithUnavailableAfter for every query a
// watch makes. A blocking query is silent by design, so silence on it
// proves nothing; what counts is when the agent last answered anything:
// a query, or the ping that a watchdog asks for after half the bound.
// One ping at a time serves every watch of the Registry.
type liveness struct {
	bound   time.Duration
	heard   atomic.Int64 // Unix nanoseconds of the last answer; 0: none
	pinging atomic.Bool
	wg      sync.WaitGroup // the ping in flight; waited for by close
	ctx     context.Context
	cancel  context.CancelFunc
}

func newLiveness(bound time.Duration) *liveness {
	ctx, cancel := context.WithCancel(context.Background())
	return &liveness{bound: bound, ctx: ctx, cancel: cancel}
}

// answered records an answer from the agent.
func (l *liveness) answered() { l.heard.Store(time.Now().UnixNano()) }

func (l *liveness) lastHeard() time.Time {
	if n := l.heard.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ping asks the agent for its leader, unless a ping is in flight; an
// answer, even an empty leader, shows the agent is alive.
func (l *liveness) ping(c *api.Client) {
	if !l.pinging.CompareAndSwap(false, true) {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.pinging.Store(false)
		ctx, cancel := context.WithTimeout(l.ctx, l.bound/2)
		defer cancel()
		if _, err := c.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx)); err == nil {
			l.answered()
		}
	}()
}

// guard runs query with a context that is cancelled, with a cause
// wrapping errSilent, once the agent has been silent for the bound,
// counting from when query starts. It returns query's result, with the
// cause in place of the context's error if the bound ended it.
func guard[T any](ctx context.Context, r *Registry, query func(context.Context) (T, error)) (T, error) {
	l := r.live
	qctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	done := make(chan struct{})
	var dog sync.WaitGroup
	dog.Go(func() {
		tick := time.NewTicker(l.bound / 4)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			heard := start
			if h := l.lastHeard(); h.After(heard) {
				heard = h
			}
			silent := time.Since(heard)
			if silent >= l.bound {
				cancel(fmt.Errorf("%w for %v (bound %v)", errSilent, silent.Round(time.Millisecond), l.bound))
				return
			}
			if silent >= l.bound/2 {
				l.ping(r.client)
			}
		}
	})
	v, err := query(qctx)
	close(done)
	dog.Wait()
	if err == nil {
		l.answered()
	} else if cause := context.Cause(qctx); errors.Is(cause, errSilent) && ctx.Err() == nil {
		err = cause
	}
	return v, err
}

// close ends a ping in flight and waits for it.
func (l *liveness) close() {
	l.cancel()
	l.wg.Wait()
}
