package app

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/balancer"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// Config is what a Wayfinder service is assembled from. Fill it with
// DefaultConfig, then ConfigFromEnv and/or RegisterFlags.
type Config struct {
	Registry        string        // registry URL; WAYFINDER_REGISTRY; default "mem://"
	Service         string        // service to serve; WAYFINDER_SERVICE
	Listen          string        // listen address; WAYFINDER_LISTEN; default "127.0.0.1:0"
	Advertise       string        // registered address; WAYFINDER_ADVERTISE; default: the listener's
	ID              string        // instance ID; WAYFINDER_INSTANCE_ID; default: random
	Version         string        // WAYFINDER_VERSION
	Zone            string        // WAYFINDER_ZONE
	Weight          int           // WAYFINDER_WEIGHT; 0 means registry.DefaultWeight
	Tags            []string      // WAYFINDER_TAGS, comma-separated
	DrainTimeout    time.Duration // WAYFINDER_DRAIN_TIMEOUT
	GracefulTimeout time.Duration // WAYFINDER_GRACEFUL_TIMEOUT
	Policy          string        // client load-balancing policy; WAYFINDER_LB_POLICY; default "round_robin"
	Plaintext       bool          // clients dial without TLS; WAYFINDER_PLAINTEXT; default true
	Subset          int           // clients connect to at most this many instances per service (resolver.WithSubset); WAYFINDER_SUBSET; 0: all
	SubsetKey       string        // the clients' subsetting key; WAYFINDER_SUBSET_KEY; default: the host name
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Registry:        "mem://",
		Listen:          "127.0.0.1:0",
		DrainTimeout:    server.DefaultDrainTimeout,
		GracefulTimeout: server.DefaultGracefulTimeout,
		Policy:          "round_robin",
		Plaintext:       true,
	}
}

// Env lists the environment variables ConfigFromEnv reads.
var Env = []string{
	"WAYFINDER_REGISTRY", "WAYFINDER_SERVICE", "WAYFINDER_LISTEN", "WAYFINDER_ADVERTISE",
	"WAYFINDER_INSTANCE_ID", "WAYFINDER_VERSION", "WAYFINDER_ZONE", "WAYFINDER_WEIGHT", "WAYFINDER_TAGS",
	"WAYFINDER_DRAIN_TIMEOUT", "WAYFINDER_GRACEFUL_TIMEOUT", "WAYFINDER_LB_POLICY", "WAYFINDER_PLAINTEXT",
	"WAYFINDER_SUBSET", "WAYFINDER_SUBSET_KEY",
}

// FromEnv overlays the WAYFINDER_* variables found by lookup
// (os.LookupEnv if nil) on c. A malformed value is an error naming the
// variable.
func (c *Config) FromEnv(lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	str := map[string]*string{
		"WAYFINDER_REGISTRY": &c.Registry, "WAYFINDER_SERVICE": &c.Service, "WAYFINDER_LISTEN": &c.Listen,
		"WAYFINDER_ADVERTISE": &c.Advertise, "WAYFINDER_INSTANCE_ID": &c.ID, "WAYFINDER_VERSION": &c.Version,
		"WAYFINDER_ZONE": &c.Zone, "WAYFINDER_LB_POLICY": &c.Policy, "WAYFINDER_SUBSET_KEY": &c.SubsetKey,
	}
	var errs []error
	for _, name := range Env {
		v, ok := lookup(name)
		if !ok {
			continue
		}
		if p, isStr := str[name]; isStr {
			*p = v
			continue
		}
		var err error
		switch name {
		case "WAYFINDER_WEIGHT":
			c.Weight, err = strconv.Atoi(v)
		case "WAYFINDER_TAGS":
			c.Tags = splitList(v)
		case "WAYFINDER_DRAIN_TIMEOUT":
			c.DrainTimeout, err = time.ParseDuration(v)
		case "WAYFINDER_GRACEFUL_TIMEOUT":
			c.GracefulTimeout, err = time.ParseDuration(v)
		case "WAYFINDER_PLAINTEXT":
			c.Plaintext, err = strconv.ParseBool(v)
		case "WAYFINDER_SUBSET":
			c.Subset, err = strconv.Atoi(v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("app: %s=%q: %w", name, v, err))
		}
	}
	return errors.Join(errs...)
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// RegisterFlags binds c's fields to flags on fs (-registry, -service, ...),
// with c's current values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Registry, "registry", c.Registry, "registry URL (mem://, consul://host:8500, etcd://host:2379)")
	fs.StringVar(&c.Service, "service", c.Service, "service name to serve")
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to listen on")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "address to register (default: the listener's)")
	fs.StringVar(&c.ID, "instance-id", c.ID, "instance ID (default: random)")
	fs.StringVar(&c.Version, "version", c.Version, "instance version")
	fs.StringVar(&c.Zone, "zone", c.Zone, "instance zone")
	fs.IntVar(&c.Weight, "weight", c.Weight, "instance weight")
	fs.Func("tags", "comma-separated instance tags", func(v string) error { c.Tags = splitList(v); return nil })
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "bound on waiting for clients to see a deregistration")
	fs.DurationVar(&c.GracefulTimeout, "graceful-timeout", c.GracefulTimeout, "bound on GracefulStop")
	fs.StringVar(&c.Policy, "lb-policy", c.Policy, "client load-balancing policy")
	fs.BoolVar(&c.Plaintext, "plaintext", c.Plaintext, "clients dial without TLS")
	fs.IntVar(&c.Subset, "subset", c.Subset, "clients connect to at most this many instances per service (0: all)")
	fs.StringVar(&c.SubsetKey, "subset-key", c.SubsetKey, "the clients' subsetting key (default: the host name)")
}

// Validate checks what can be checked without opening anything.
func (c Config) Validate() error {
	if err := registry.ValidateURL(c.Registry); err != nil {
		return fmt.Errorf("app: registry %q: %w", c.Registry, err)
	}
	if c.Service != "" {
		if err := registry.ValidateService(c.Service); err != nil {
			return fmt.Errorf("app: service: %w", err)
		}
	}
	if c.Policy == "" || balancer.Get(c.Policy) == nil {
		return fmt.Errorf("app: load-balancing policy %q is not registered; import its package (for example balancer/<policy>) or use round_robin or pick_first", c.Policy)
	}
	if c.DrainTimeout < 0 || c.GracefulTimeout < 0 {
		return errors.New("app: timeouts must not be negative")
	}
	if c.Subset < 0 {
		return fmt.Errorf("app: subset %d: must not be negative (0 connects to every instance)", c.Subset)
	}
	return nil
}
