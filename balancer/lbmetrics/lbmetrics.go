package lbmetrics

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
)

// Metric names.
const (
	MetricPicks     = "wayfinder.lb.picks"     // counter: calls picked
	MetricEjections = "wayfinder.lb.ejections" // counter: outlier ejections
	MetricEjected   = "wayfinder.lb.ejected"   // gauge: endpoints ejected now
	MetricEndpoints = "wayfinder.lb.endpoints" // gauge: endpoints by connectivity state
)

// Attribute keys.
const (
	AttrTarget   = "wayfinder.target"   // the ClientConn's target, canonical (grpc.ClientConn.CanonicalTarget)
	AttrPolicy   = "wayfinder.policy"   // the policy's package name
	AttrState    = "wayfinder.state"    // connectivity state, on MetricEndpoints
	AttrEndpoint = "wayfinder.endpoint" // endpoint address, on MetricPicks with WithEndpointLabels only
)

// ejectingPolicy is the inspect name of the policy that ejects.
const ejectingPolicy = "outlier"

// Option configures Register.
type Option func(*options)

type options struct {
	picks, endpoints bool
}

// WithPickCounts turns pick counting on (inspect.CountPicks) and exports
// wayfinder.lb.picks per target and policy. It costs one atomic add per
// pick; balancers start counting with their next picker.
func WithPickCounts() Option { return func(o *options) { o.picks = true } }

// WithEndpointLabels is WithPickCounts with the endpoint's address as
// the attribute wayfinder.endpoint on wayfinder.lb.picks. The number of
// series is then unbounded by the number of instances a service ever
// had (each new address is a new series); use it where that is
// acceptable, such as a few services with stable addresses. An
// endpoint's series disappears when it is removed; the picks of removed
// endpoints are then only in the series without endpoint labels, which
// this option does not export.
func WithEndpointLabels() Option { return func(o *options) { o.picks, o.endpoints = true, true } }

// Register creates the balancer metrics on mp's meter
// "github.com/wayfinder-rpc/wayfinder/balancer" (OpenTelemetry's global
// provider if mp is nil). stop unregisters them and, with
// WithPickCounts, stops counting picks.
func Register(mp metric.MeterProvider, opts ...Option) (stop func() error, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter("github.com/wayfinder-rpc/wayfinder/balancer")
	picks, err1 := m.Int64ObservableCounter(MetricPicks, metric.WithUnit("{pick}"),
		metric.WithDescription("Calls picked by Wayfinder load-balancing policies, when pick counting is on."))
	ejections, err2 := m.Int64ObservableCounter(MetricEjections, metric.WithUnit("{ejection}"),
		metric.WithDescription("Endpoints ejected by outlier ejection."))
	ejected, err3 := m.Int64ObservableGauge(MetricEjected, metric.WithUnit("{endpoint}"),
		metric.WithDescription("Endpoints currently ejected by outlier ejection."))
	endpoints, err4 := m.Int64ObservableGauge(MetricEndpoints, metric.WithUnit("{endpoint}"),
		metric.WithDescription("Endpoints of Wayfinder load-balancing policies, by connectivity state."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		observe(obs, inspect.Balancers(), o, picks, ejections, ejected, endpoints)
		return nil
	}, picks, ejections, ejected, endpoints)
	if err != nil {
		return nil, err
	}
	stopCounting := func() {}
	if o.picks {
		stopCounting = inspect.CountPicks()
	}
	var once sync.Once
	var stopErr error
	return func() error {
		once.Do(func() {
			stopCounting()
			stopErr = reg.Unregister()
		})
		return stopErr
	}, nil
}

type key struct{ target, policy, extra string }

// observe sums the balancers' numbers per attribute set: several
// ClientConns may share a target and policy.
func observe(obs metric.Observer, bs []inspect.Balancer, o options, picks, ejections metric.Int64ObservableCounter, ejected, endpoints metric.Int64ObservableGauge) {
	pk, ej, ejd, eps := map[key]int64{}, map[key]int64{}, map[key]int64{}, map[key]int64{}
	for _, b := range bs {
		k := key{target: b.Target, policy: b.Policy}
		if o.picks && b.CountsPicks {
			if o.endpoints {
				for _, e := range b.Endpoints {
					pk[key{b.Target, b.Policy, e.Addr}] += int64(e.Picks)
				}
			} else {
				pk[k] += int64(b.Picks)
			}
		}
		if b.Policy == ejectingPolicy {
			ej[k] += int64(b.Ejections)
			ejd[k] += 0 // observed even when nothing is ejected
			for _, e := range b.Endpoints {
				if e.Ejected {
					ejd[k]++
				}
			}
		}
		for _, e := range b.Endpoints {
			eps[key{b.Target, b.Policy, e.State}]++
		}
	}
	attrs := func(k key, extra string) metric.ObserveOption {
		kv := []attribute.KeyValue{attribute.String(AttrTarget, k.target), attribute.String(AttrPolicy, k.policy)}
		if extra != "" {
			kv = append(kv, attribute.String(extra, k.extra))
		}
		return metric.WithAttributes(kv...)
	}
	extra := ""
	if o.endpoints {
		extra = AttrEndpoint
	}
	for k, n := range pk {
		obs.ObserveInt64(picks, n, attrs(k, extra))
	}
	for k, n := range ej {
		obs.ObserveInt64(ejections, n, attrs(k, ""))
	}
	for k, n := range ejd {
		obs.ObserveInt64(ejected, n, attrs(k, ""))
	}
	for k, n := range eps {
		obs.ObserveInt64(endpoints, n, attrs(k, AttrState))
	}
}
