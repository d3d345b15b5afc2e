package outlier

import (
	"encoding/json"
	"errors"
	"time"

	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
)

// Name is the policy's registered name.
const Name = "wayfinder_outlier_ejection"

// Defaults.
const (
	DefaultChild               = "round_robin"
	DefaultConsecutiveFailures = 5
	DefaultMinimumRequests     = 20
	DefaultInterval            = 10 * time.Second
	DefaultBaseEjectionTime    = 30 * time.Second
	DefaultMaxEjectionTime     = 5 * time.Minute
	DefaultMaxEjectionPercent  = 10
)

// ErrEjected is the error the child policy sees for an ejected endpoint.
var ErrEjected = errors.New(Name + ": endpoint ejected as an outlier")

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Child is the policy that chooses among the endpoints not ejected,
	// as a loadBalancingConfig list. Default [{"round_robin":{}}].
	Child lbconfig.Child `json:"child"`
	// ConsecutiveFailures ejects an endpoint after this many failed calls
	// in a row. Default 5; range 0..1000000; 0 disables.
	ConsecutiveFailures int `json:"consecutiveFailures"`
	// FailureRateThreshold ejects an endpoint whose share of failed calls
	// over one Interval is at least this, if it had MinimumRequests calls.
	// Default 0 (disabled); range 0..1.
	FailureRateThreshold float64 `json:"failureRateThreshold"`
	// MinimumRequests is the number of calls in an Interval below which
	// the failure rate is not judged. Default 20; range 1..1000000000.
	MinimumRequests int `json:"minimumRequests"`
	// Interval is the period over which failure rates are measured, and
	// after which a healthy endpoint's ejection multiplier decreases.
	// Default 10s; range 1ms..1h.
	Interval lbconfig.Duration `json:"interval"`
	// BaseEjectionTime is how long a first ejection lasts; the n-th
	// ejection in a row lasts n times longer. Default 30s; range 1ms..1h.
	BaseEjectionTime lbconfig.Duration `json:"baseEjectionTime"`
	// MaxEjectionTime caps an ejection. Default max(5m, baseEjectionTime);
	// at least baseEjectionTime, at most 24h.
	MaxEjectionTime lbconfig.Duration `json:"maxEjectionTime"`
	// MaxEjectionPercent caps the endpoints ejected at once, as a
	// percentage of all endpoints; one endpoint may always be ejected
	// unless it is 0. Default 10; range 0..100; 0 disables ejection.
	MaxEjectionPercent *int `json:"maxEjectionPercent"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	pct := DefaultMaxEjectionPercent
	cfg := &Config{
		Child:               lbconfig.DefaultChild(DefaultChild),
		ConsecutiveFailures: DefaultConsecutiveFailures,
		MinimumRequests:     DefaultMinimumRequests,
		Interval:            lbconfig.Duration(DefaultInterval),
		BaseEjectionTime:    lbconfig.Duration(DefaultBaseEjectionTime),
		MaxEjectionPercent:  &pct,
	}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	if cfg.Child.Builder == nil {
		return nil, lbconfig.Invalid(Name, "child", "no policy")
	}
	if n := cfg.ConsecutiveFailures; n < 0 || n > 1e6 {
		return nil, lbconfig.Invalid(Name, "consecutiveFailures", "%d is out of range 0..1000000", n)
	}
	// !(x >= 0) also rejects NaN, which JSON cannot carry but a caller's
	// struct can.
	if r := cfg.FailureRateThreshold; !(r >= 0 && r <= 1) {
		return nil, lbconfig.Invalid(Name, "failureRateThreshold", "%v is out of range 0..1", r)
	}
	if cfg.ConsecutiveFailures == 0 && cfg.FailureRateThreshold == 0 {
		return nil, lbconfig.Invalid(Name, "consecutiveFailures", "0 and failureRateThreshold 0 disable every detection; set one")
	}
	if n := cfg.MinimumRequests; n < 1 || n > 1e9 {
		return nil, lbconfig.Invalid(Name, "minimumRequests", "%d is out of range 1..1000000000", n)
	}
	if d := time.Duration(cfg.Interval); d < time.Millisecond || d > time.Hour {
		return nil, lbconfig.Invalid(Name, "interval", "%v is out of range 1ms..1h", d)
	}
	base := time.Duration(cfg.BaseEjectionTime)
	if base < time.Millisecond || base > time.Hour {
		return nil, lbconfig.Invalid(Name, "baseEjectionTime", "%v is out of range 1ms..1h", base)
	}
	if cfg.MaxEjectionTime == 0 {
		cfg.MaxEjectionTime = lbconfig.Duration(max(DefaultMaxEjectionTime, base))
	}
	if d := time.Duration(cfg.MaxEjectionTime); d < base || d > 24*time.Hour {
		return nil, lbconfig.Invalid(Name, "maxEjectionTime", "%v is out of range baseEjectionTime (%v)..24h", d, base)
	}
	if cfg.MaxEjectionPercent == nil {
		cfg.MaxEjectionPercent = &pct
	}
	if p := *cfg.MaxEjectionPercent; p < 0 || p > 100 {
		return nil, lbconfig.Invalid(Name, "maxEjectionPercent", "%d is out of range 0..100", p)
	}
	return cfg, nil
}
