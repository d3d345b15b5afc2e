package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// registration is the reconcile loop of one instance: register, then
// heartbeat (or, with no TTL check, verify) forever; on any failure,
// back off and register again.
type registration struct {
	r        *Registry
	inst     registry.Instance
	id       string
	healthFn registry.HealthFunc // from RegisterWithHealth; overrides the Registry's HealthFunc
	serves   bool                // from RegisterWithHealth: the registrant serves grpc.health.v1 at inst.Address
	probe    AddressCheck        // from RegisterWithAddressCheck

	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	first  chan error    // receives the first attempt's result

	mu      sync.Mutex // guards the fields below
	status  registry.RegistrationStatus
	changed chan struct{}
}

func (g *registration) setStatus(f func(*registry.RegistrationStatus)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.status
	f(&g.status)
	if old.State != g.status.State || old.Err != g.status.Err || old.Registrations != g.status.Registrations || old.Healthy != g.status.Healthy {
		close(g.changed)
		g.changed = make(chan struct{})
	}
}

func (g *registration) snapshot() registry.RegistrationStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.status
	s.Changed = g.changed
	return s
}

// stop ends the loop and waits for it, so no heartbeat is in flight
// afterwards.
func (g *registration) stop() {
	g.cancel()
	<-g.done
}

// Status implements registry.StatusReporter: the state of inst's
// registration by this Registry.
func (r *Registry) Status(inst registry.Instance) registry.RegistrationStatus {
	r.mu.Lock()
	g := r.regs[inst.Key()]
	r.mu.Unlock()
	if g == nil {
		ch := make(chan struct{}) // never closed: nothing will change
		return registry.RegistrationStatus{State: registry.StateUnknown, Changed: ch}
	}
	return g.snapshot()
}

// Register implements registry.Registrar. It validates inst, starts the
// instance's reconcile loop and returns the result of the first
// attempt: the registration and, with a TTL check, its first heartbeat,
// which is what makes the agent persist the check's state, so that an
// agent restarted at any time after Register returns restores the
// instance passing. The loop keeps running whatever that result: after an error
// it retries with backoff, so a server started while its agent is down
// appears once the agent is back. Deregister or Close stops it.
// Registering the same instance again replaces the registration.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	return r.register(ctx, inst, regOpts{})
}

// RegisterWithHealth implements registry.HealthRegistrar: Register, with
// the TTL heartbeat reporting health's verdict for this instance instead
// of the Registry's HealthFunc. The server lifecycle passes its
// grpc.health.v1 status here, so that NOT_SERVING makes the instance
// critical at the next heartbeat.
//
// The caller serves grpc.health.v1 at inst.Address itself, so unless the
// Registry has a gRPC check of its own (WithGRPCCheck) or
// WithoutServerGRPCCheck, a native gRPC check is added next to the TTL
// heartbeat (DefaultServerGRPCInterval, DefaultServerGRPCTimeout, asking
// about "" or WithGRPCCheckService's name): the agent itself then sees a
// dead process within 3 s, for every client that reads Consul.
func (r *Registry) RegisterWithHealth(ctx context.Context, inst registry.Instance, health registry.HealthFunc) error {
	return r.register(ctx, inst, regOpts{health: health, serves: true})
}

// AddressCheck is a check of the registered address by the agent, for
// RegisterWithAddressCheck.
type AddressCheck int

const (
	// AddressCheckNone: the agent does not probe the address.
	AddressCheckNone AddressCheck = iota
	// AddressCheckTCP: the agent connects to the address (any server passes).
	AddressCheckTCP
	// AddressCheckGRPC: the agent calls grpc.health.v1.Health/Check on it.
	AddressCheckGRPC
)

// RegisterWithAddressCheck is Register, plus a check of inst.Address by
// the agent every DefaultServerGRPCInterval (DefaultServerGRPCTimeout
// timeout), for tools that announce an address they do not serve
// themselves, such as wayfinder register: Consul then sees that the
// server behind it died without waiting for a TTL. An AddressCheckGRPC
// is not added twice when the Registry has WithGRPCCheck.
func (r *Registry) RegisterWithAddressCheck(ctx context.Context, inst registry.Instance, check AddressCheck) error {
	if check < AddressCheckNone || check > AddressCheckGRPC {
		return fmt.Errorf("consul: register %s: unknown AddressCheck %d", inst, check)
	}
	return r.register(ctx, inst, regOpts{probe: check, serves: check == AddressCheckGRPC})
}

// regOpts are what the Register variants add to a registration.
type regOpts struct {
	health registry.HealthFunc // RegisterWithHealth's
	serves bool                // inst.Address serves grpc.health.v1: add the default gRPC check
	probe  AddressCheck        // RegisterWithAddressCheck's
}

func (r *Registry) register(ctx context.Context, inst registry.Instance, o regOpts) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	inst = inst.Clone()
	if _, err := encode(inst); err != nil {
		return fmt.Errorf("consul: register %s: %w: %w", inst, registry.ErrInvalidInstance, err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return r.errClosed()
	}
	old := r.regs[inst.Key()]
	// The stamp changes only with the instance, so that registering an
	// unchanged instance again rewrites the same Meta and the catalog,
	// and every watcher of the service, sees no change.
	if old != nil && old.inst.Equal(inst) {
		inst.Registered = old.inst.Registered
	} else {
		inst.Registered = time.Now()
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	g := &registration{
		r: r, inst: inst, id: serviceID(inst), healthFn: o.health, serves: o.serves, probe: o.probe,
		cancel: cancel, done: make(chan struct{}), first: make(chan error, 1),
		status:  registry.RegistrationStatus{State: registry.StatePending},
		changed: make(chan struct{}),
	}
	r.regs[inst.Key()] = g
	r.mu.Unlock()
	if old != nil {
		old.stop() // the new loop's registration replaces the old one
	}
	go g.run(loopCtx)
	wctx, wcancel, bound := r.bounded(ctx)
	defer wcancel()
	select {
	case err := <-g.first:
		return err
	case <-wctx.Done():
	}
	op := "register " + inst.Key()
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("consul: %s: %w (still retrying in the background)", op, ctx.Err())
	}
	if st := g.snapshot(); st.Err != nil {
		// An attempt failed without ending the first one (a 429).
		return st.Err
	}
	return &registry.UnavailableError{Registry: r.agentName(nil), Op: op, Cause: registry.CauseNoAnswer, Bound: bound,
		Err: fmt.Errorf("%w (still retrying in the background)", context.DeadlineExceeded)}
}

// Deregister implements registry.Registrar: it stops the heartbeat,
// then removes the service from the agent, retrying Consul's own errors
// (a 500, a 429) until ctx is done or, if ctx has no deadline, for the
// Registry's timeout (WithTimeout). An agent that refuses the
// connection, does not answer within that bound or is not Consul fails
// it at once. An unknown instance is not an error.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := registry.ValidateService(inst.Service); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return r.errClosed()
	}
	g := r.regs[inst.Key()]
	delete(r.regs, inst.Key())
	r.mu.Unlock()
	op := "deregister " + inst.Key()
	ctx, cancel, bound := r.bounded(ctx)
	defer cancel()
	if g != nil {
		// The loop's requests use its own context, cancelled here, so
		// this wait is short; ctx still bounds it.
		g.cancel()
		select {
		case <-g.done:
		case <-ctx.Done():
			return r.unavailable(op, bound, ctx.Err())
		}
	}
	id := serviceID(inst)
	for n := 1; ; n++ {
		err := r.agent.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil || isNotFound(err) {
			r.log.Info("consul: deregistered", "instance", inst.Key())
			return nil
		}
		uerr := r.unavailable(op, bound, err)
		var ue *registry.UnavailableError
		if ctx.Err() != nil || !errors.As(uerr, &ue) || ue.Cause != registry.CauseServer || isPermanent(err) {
			// Only Consul's own errors may pass: a refused
			// connection, no answer or another server will not.
			return uerr
		}
		if !r.waitRetry(ctx, backoff.Delay(n, r.cfg.backoffBase, r.cfg.backoffMax)) {
			return r.unavailable(op, bound, fmt.Errorf("%w (retried until %w)", err, ctx.Err()))
		}
	}
}

func (g *registration) run(ctx context.Context) {
	defer close(g.done)
	r := g.r
	cfg := &r.cfg
	interval := cfg.resync
	if cfg.ttl > 0 {
		interval = cfg.ttl / 3
	}
	needRegister := true
	// beatNow: heartbeat at once after a registration. Consul persists a
	// TTL check's state (to restore it after an agent restart) when the
	// check is updated, not with the registration's initial status, and
	// restores a check with no persisted state as critical: without this
	// beat, a restarted agent reported every instance that had not yet had
	// a heartbeat critical until its next one, up to TTL/3 later.
	beatNow, afterRegister := false, false
	failures := 0
	reported := false
	report := func(err error) {
		if !reported {
			reported = true
			g.first <- err
		}
	}
	defer report(fmt.Errorf("consul: register %s: %w", g.inst, registry.ErrClosed))
	for {
		var err error
		if needRegister {
			err = g.register(ctx)
			if err == nil {
				needRegister = false
				beatNow = cfg.ttl > 0
				g.setStatus(func(s *registry.RegistrationStatus) {
					s.State, s.Err = registry.StateRegistered, nil
					s.Registrations++
				})
				if failures > 0 || g.snapshot().Registrations > 1 {
					r.log.Info("consul: re-registered", "instance", g.inst.Key())
				}
			}
		} else {
			err = g.beat(ctx)
			// Right after registering, a lost registration is a failure
			// (with backoff), not a reason to register again at once.
			if isNotFound(err) && !afterRegister {
				// The agent forgot the service (restart, or someone
				// removed it): register again at once.
				r.log.Warn("consul: agent lost the registration; registering again", "instance", g.inst.Key())
				needRegister = true
				continue
			}
			if err == nil {
				g.setStatus(func(s *registry.RegistrationStatus) { s.State, s.Err = registry.StateRegistered, nil })
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			op := "register "
			if !needRegister {
				op = "heartbeat "
			}
			err = r.unavailable(op+g.inst.Key(), cfg.timeout, err)
			failures++
			needRegister = true // whatever failed, the agent's state is unknown now
			// Status first, so that it is current when Register returns.
			g.setStatus(func(s *registry.RegistrationStatus) { s.State, s.Err = registry.StateRetrying, err })
			if !isTooManyRequests(err) {
				// A 429 says "later", not "no": Register waits for
				// the retry instead of reporting it.
				report(err)
			}
			if failures == 1 || failures%20 == 0 {
				r.log.Warn("consul: registration failing; retrying", "instance", g.inst.Key(), "failures", failures, "err", err)
			}
			if !r.waitRetry(ctx, min(backoff.Delay(failures, cfg.backoffBase, cfg.backoffMax), interval)) {
				return
			}
			continue
		}
		failures = 0
		if afterRegister = beatNow; beatNow {
			// Register returns after this beat, not before: until it,
			// an agent restart would restore the check as critical.
			beatNow = false
			continue
		}
		report(nil)
		// Up to 20% early, so that instances registered together do
		// not heartbeat together.
		if !r.sleepOrRecovered(ctx, interval-rand.N(interval/5+1)) {
			return
		}
	}
}

// health runs the HealthFunc, bounded by the heartbeat interval.
func (g *registration) health(ctx context.Context) error {
	f := g.r.cfg.health
	if g.healthFn != nil {
		f = g.healthFn
	}
	if f == nil {
		return nil
	}
	d := g.r.cfg.resync
	if g.r.cfg.ttl > 0 {
		d = g.r.cfg.ttl / 3
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx, g.inst.Clone())
}

func checkStatus(err error) (status, output string) {
	if err != nil {
		out := err.Error()
		if len(out) > 1024 {
			out = out[:1024]
		}
		return api.HealthCritical, out
	}
	return api.HealthPassing, "serving"
}

// register sends the full registration, replacing checks, with the TTL
// check's initial status taken from the HealthFunc so that a healthy
// instance is passing at once.
func (g *registration) register(ctx context.Context) error {
	cfg := &g.r.cfg
	reg, err := encode(g.inst)
	if err != nil {
		return err
	}
	herr := g.health(ctx)
	status, _ := checkStatus(herr)
	if cfg.ttl > 0 {
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID:                        g.id + ":ttl",
			Name:                           "wayfinder heartbeat",
			Notes:                          "refreshed every TTL/3 with the server's health",
			TTL:                            cfg.ttl.String(),
			Status:                         status,
			DeregisterCriticalServiceAfter: cfg.deregisterAfter.String(),
		})
	}
	interval, timeout := cfg.grpcInterval, cfg.grpcTimeout
	if interval == 0 && g.serves && (!cfg.noServerGRPC || g.probe == AddressCheckGRPC) {
		interval, timeout = DefaultServerGRPCInterval, DefaultServerGRPCTimeout
	}
	if interval > 0 {
		target := g.inst.Address
		if cfg.grpcService != "" {
			target += "/" + cfg.grpcService
		}
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID:  g.id + ":grpc",
			Name:     "gRPC health",
			GRPC:     target,
			Interval: interval.String(),
			Timeout:  timeout.String(),
			// The agent's first probe comes up to one interval later;
			// until then trust the local health result.
			Status:                         status,
			GRPCUseTLS:                     cfg.grpcTLS,
			DeregisterCriticalServiceAfter: cfg.deregisterAfter.String(),
		})
	}
	if g.probe == AddressCheckTCP {
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID:                        g.id + ":tcp",
			Name:                           "TCP connect",
			TCP:                            g.inst.Address,
			Interval:                       DefaultServerGRPCInterval.String(),
			Timeout:                        DefaultServerGRPCTimeout.String(),
			Status:                         status,
			DeregisterCriticalServiceAfter: cfg.deregisterAfter.String(),
		})
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := g.r.agent.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(rctx)); err != nil {
		return err
	}
	g.setStatus(func(s *registry.RegistrationStatus) { s.Healthy = herr == nil })
	if herr != nil {
		g.r.log.Info("consul: registered as critical: not healthy", "instance", g.inst.Key(), "health", herr)
	} else {
		g.r.log.Info("consul: registered", "instance", g.inst.Key(), "consul_id", g.id)
	}
	return nil
}

// beat refreshes the TTL check with the current health or, without a
// TTL check, asks the agent whether it still has the service.
func (g *registration) beat(ctx context.Context) error {
	if g.r.cfg.ttl == 0 {
		rctx, cancel := context.WithTimeout(ctx, g.r.cfg.timeout)
		defer cancel()
		_, _, err := g.r.agent.Agent().Service(g.id, (&api.QueryOptions{}).WithContext(rctx))
		return err
	}
	herr := g.health(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	status, output := checkStatus(herr)
	rctx, cancel := context.WithTimeout(ctx, g.r.cfg.timeout)
	defer cancel()
	err := g.r.agent.Agent().UpdateTTLOpts(g.id+":ttl", output, status, (&api.QueryOptions{}).WithContext(rctx))
	if err != nil {
		return err
	}
	was := g.snapshot().Healthy
	if was != (herr == nil) {
		g.r.log.Info("consul: health changed", "instance", g.inst.Key(), "healthy", herr == nil, "health", herr)
	}
	g.setStatus(func(s *registry.RegistrationStatus) { s.Healthy = herr == nil })
	return nil
}
