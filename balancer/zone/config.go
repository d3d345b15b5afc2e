package zone

import (
	"encoding/json"
	"os"
	"slices"

	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
)

// Name is the policy's registered name.
const Name = "wayfinder_zone_aware"

// EnvZone is the environment variable that gives the local zone when the
// config sets none; the same variable app.Config reads for the zone a
// server registers in.
const EnvZone = "WAYFINDER_ZONE"

// Defaults.
const (
	DefaultMinLocalShare = 0.7
	DefaultChild         = "round_robin"
)

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// LocalZone is the client's zone. Default: the WAYFINDER_ZONE
	// environment variable when ParseConfig runs; if both are empty
	// there is no local zone (see the package doc).
	LocalZone string `json:"localZone"`
	// MinLocalShare is the fraction of a zone's capacity that must be
	// healthy for the zone to take all the calls it is offered; below
	// it, the zone takes a proportional part and the rest spills over
	// to the next zones. Default 0.7; range (0, 1].
	MinLocalShare float64 `json:"minLocalShare"`
	// FailoverOrder lists the zones to spill over and fail over to, in
	// order, after the local zone; the local zone is skipped if listed,
	// so one list can serve every zone. Zones not listed come last,
	// together.
	FailoverOrder []string `json:"failoverOrder"`
	// Child is the policy run inside each zone, as a loadBalancingConfig
	// list. Default [{"round_robin":{}}].
	Child lbconfig.Child `json:"child"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{MinLocalShare: DefaultMinLocalShare, Child: lbconfig.DefaultChild(DefaultChild)}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	if cfg.LocalZone == "" {
		cfg.LocalZone = os.Getenv(EnvZone)
	}
	if m := cfg.MinLocalShare; !(m > 0 && m <= 1) {
		return nil, lbconfig.Invalid(Name, "minLocalShare", "%v is out of range (0, 1]", m)
	}
	for i, z := range cfg.FailoverOrder {
		if z == "" {
			return nil, lbconfig.Invalid(Name, "failoverOrder", "entry %d is empty", i)
		}
		if slices.Contains(cfg.FailoverOrder[:i], z) {
			return nil, lbconfig.Invalid(Name, "failoverOrder", "zone %q is listed twice", z)
		}
	}
	if cfg.Child.Builder == nil {
		return nil, lbconfig.Invalid(Name, "child", "no policy")
	}
	return cfg, nil
}
