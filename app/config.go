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
// DefaultConfig, then FromEnv and/or RegisterFlags. Each field's
// environment variable, flag, default and help are defined once, in one
// table that all four read; -help on a program that called RegisterFlags
// prints them, and docs/fx.md lists them.
type Config struct {
	Registry        string        // registry URL
	Service         string        // service to serve; required by ServerModule
	Listen          string        // address to listen on
	Advertise       string        // address to register; empty: the listener's
	ID              string        // instance ID; empty: "<service>-<random>"
	Version         string        // instance version
	Zone            string        // instance zone, also the clients' local zone
	Weight          int           // instance weight; 0 means registry.DefaultWeight
	Tags            []string      // instance tags
	DrainTimeout    time.Duration // server.WithDrainTimeout
	GracefulTimeout time.Duration // server.WithGracefulTimeout
	Policy          string        // clients' load-balancing policy
	Plaintext       bool          // clients dial without TLS; see the package doc
	Subset          int           // clients connect to at most this many instances per service (resolver.WithConnectionSubset); 0: all
	SubsetKey       string        // the clients' subsetting key; empty: the host name
	Reflection      bool          // server.WithReflection: serve gRPC server reflection
	LoadReports     bool          // server.WithLoadReports: serve ORCA load reports (per-call trailers and out of band)
}

// field is one Config field's outside names, default and help (a
// `word` in it names the flag's argument in -help, as in package flag). bind
// returns a flag.Value over the field of c, so that defaults, the
// environment and flags all go through the same parser.
type field struct {
	flag, env, def, help string
	bind                 func(c *Config) flag.Value
}

// fields is the one table of Config's fields. A field missing here is a
// test failure (TestFieldsCoverConfig).
var fields = []field{
	{"registry", "WAYFINDER_REGISTRY", "mem://", "registry `URL` (mem://, consul://host:8500, etcd://host:2379)",
		func(c *Config) flag.Value { return (*stringValue)(&c.Registry) }},
	{"service", "WAYFINDER_SERVICE", "", "service `name` to serve",
		func(c *Config) flag.Value { return (*stringValue)(&c.Service) }},
	{"listen", "WAYFINDER_LISTEN", "127.0.0.1:0", "`address` to listen on",
		func(c *Config) flag.Value { return (*stringValue)(&c.Listen) }},
	{"advertise", "WAYFINDER_ADVERTISE", "", "`address` to register (default: the listener's)",
		func(c *Config) flag.Value { return (*stringValue)(&c.Advertise) }},
	{"instance-id", "WAYFINDER_INSTANCE_ID", "", "instance `ID` (default: <service>-<random>)",
		func(c *Config) flag.Value { return (*stringValue)(&c.ID) }},
	{"version", "WAYFINDER_VERSION", "", "instance `version`",
		func(c *Config) flag.Value { return (*stringValue)(&c.Version) }},
	{"zone", "WAYFINDER_ZONE", "", "instance `zone`",
		func(c *Config) flag.Value { return (*stringValue)(&c.Zone) }},
	{"weight", "WAYFINDER_WEIGHT", "0", "instance `weight` (0: the registry's default weight)",
		func(c *Config) flag.Value { return (*intValue)(&c.Weight) }},
	{"tags", "WAYFINDER_TAGS", "", "comma-separated instance `tags`",
		func(c *Config) flag.Value { return (*listValue)(&c.Tags) }},
	{"drain-timeout", "WAYFINDER_DRAIN_TIMEOUT", server.DefaultDrainTimeout.String(), "bound on waiting for clients to see a deregistration (a `duration`)",
		func(c *Config) flag.Value { return (*durationValue)(&c.DrainTimeout) }},
	{"graceful-timeout", "WAYFINDER_GRACEFUL_TIMEOUT", server.DefaultGracefulTimeout.String(), "bound on GracefulStop (a `duration`)",
		func(c *Config) flag.Value { return (*durationValue)(&c.GracefulTimeout) }},
	{"lb-policy", "WAYFINDER_LB_POLICY", "round_robin", "client load-balancing `policy`",
		func(c *Config) flag.Value { return (*stringValue)(&c.Policy) }},
	{"plaintext", "WAYFINDER_PLAINTEXT", "true", "clients dial without TLS unless given transport credentials (set false in production)",
		func(c *Config) flag.Value { return (*boolValue)(&c.Plaintext) }},
	{"subset", "WAYFINDER_SUBSET", "0", "clients connect to at most `n` instances per service (0: all)",
		func(c *Config) flag.Value { return (*intValue)(&c.Subset) }},
	{"subset-key", "WAYFINDER_SUBSET_KEY", "", "the clients' subsetting `key` (default: the host name)",
		func(c *Config) flag.Value { return (*stringValue)(&c.SubsetKey) }},
	{"reflection", "WAYFINDER_REFLECTION", "false", "serve gRPC server reflection, for grpcurl and wayfinder call without compiled-in stubs",
		func(c *Config) flag.Value { return (*boolValue)(&c.Reflection) }},
	{"load-reports", "WAYFINDER_LOAD_REPORTS", "false", "serve ORCA load reports (CPU, calls in flight, application metrics) in every call's trailer and out of band, for load-aware client policies",
		func(c *Config) flag.Value { return (*boolValue)(&c.LoadReports) }},
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	var c Config
	for _, f := range fields {
		if f.def == "" {
			continue
		}
		if err := f.bind(&c).Set(f.def); err != nil {
			panic(fmt.Sprintf("app: default of %s %q: %v", f.env, f.def, err)) // a bug in the table
		}
	}
	return c
}

// Env lists the environment variables FromEnv reads.
var Env = func() []string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.env
	}
	return names
}()

// FromEnv overlays the WAYFINDER_* variables found by lookup
// (os.LookupEnv if nil) on c. A malformed value is an error naming the
// variable; every malformed variable is reported, not just the first.
func (c *Config) FromEnv(lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []error
	for _, f := range fields {
		v, ok := lookup(f.env)
		if !ok {
			continue
		}
		if err := f.bind(c).Set(v); err != nil {
			errs = append(errs, fmt.Errorf("app: %s=%q: %w", f.env, v, err))
		}
	}
	return errors.Join(errs...)
}

// RegisterFlags binds c's fields to flags on fs (-registry, -service, ...),
// with c's current values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	for _, f := range fields {
		fs.Var(f.bind(c), f.flag, f.help+" ($"+f.env+")")
	}
}

// ServerOptions returns the server.Options c describes, for server.New
// outside fx: server.New(reg, c.Service, c.ServerOptions()...) builds the
// server NewServer does.
func (c Config) ServerOptions() []server.Option {
	opts := []server.Option{
		server.WithListenAddress(c.Listen), server.WithAdvertiseAddress(c.Advertise), server.WithID(c.ID),
		server.WithVersion(c.Version), server.WithZone(c.Zone), server.WithWeight(c.Weight),
		server.WithTags(c.Tags...), server.WithDrainTimeout(c.DrainTimeout), server.WithGracefulTimeout(c.GracefulTimeout),
	}
	if c.Reflection {
		opts = append(opts, server.WithReflection())
	}
	if c.LoadReports {
		opts = append(opts, server.WithLoadReports())
	}
	return opts
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

// The flag.Values behind the table. Their String methods accept a nil
// receiver because package flag calls them on zero values.

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string {
	if v == nil {
		return ""
	}
	return string(*v)
}

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	*v = intValue(n)
	return nil
}

func (v *intValue) String() string {
	if v == nil {
		return "0"
	}
	return strconv.Itoa(int(*v))
}

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean (want true or false)")
	}
	*v = boolValue(b)
	return nil
}

func (v *boolValue) String() string {
	if v == nil {
		return "false"
	}
	return strconv.FormatBool(bool(*v))
}

// IsBoolFlag lets -plaintext stand for -plaintext=true, as flag.BoolVar does.
func (v *boolValue) IsBoolFlag() bool { return true }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (want, for example, 5s or 250ms)")
	}
	*v = durationValue(d)
	return nil
}

func (v *durationValue) String() string {
	if v == nil {
		return "0s"
	}
	return time.Duration(*v).String()
}

// listValue is a comma-separated list; blanks around and between the
// commas are dropped.
type listValue []string

func (v *listValue) Set(s string) error {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	*v = out
	return nil
}

func (v *listValue) String() string {
	if v == nil {
		return ""
	}
	return strings.Join(*v, ",")
}
