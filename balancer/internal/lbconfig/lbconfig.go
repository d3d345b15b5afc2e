// Package lbconfig decodes and validates the JSON configs of Wayfinder's
// policies, so that they all reject the same mistakes the same way and
// every error names the policy and the field.
package lbconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer"
)

// Decode unmarshals js into cfg, a pointer to a struct that already holds
// the defaults. Fields are matched exactly by their json tags; an unknown
// field, a value of the wrong type, or a document that is not a JSON
// object is a *balancer.ConfigError naming policy and the field. An empty
// or null document keeps the defaults.
//
// Fields are decoded one at a time, rather than with one json.Unmarshal
// and DisallowUnknownFields, so that every error, including one from a
// field's own UnmarshalJSON, can name its field.
func Decode(policy string, js json.RawMessage, cfg any) error {
	js = bytes.TrimSpace(js)
	if len(js) == 0 || string(js) == "null" {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(js, &fields); err != nil || fields == nil {
		reason := "want a JSON object"
		if err != nil {
			reason += ": " + strings.TrimPrefix(err.Error(), "json: ")
		}
		return &balancer.ConfigError{Policy: policy, Reason: reason}
	}
	v := reflect.ValueOf(cfg).Elem()
	known := jsonFields(v.Type())
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		idx, ok := known[name]
		if !ok {
			return &balancer.ConfigError{Policy: policy, Field: name,
				Reason: "unknown field; accepted: " + strings.Join(slices.Sorted(maps.Keys(known)), ", ")}
		}
		if err := json.Unmarshal(fields[name], v.FieldByIndex(idx).Addr().Interface()); err != nil {
			return &balancer.ConfigError{Policy: policy, Field: name, Reason: strings.TrimPrefix(err.Error(), "json: ")}
		}
	}
	return nil
}

func jsonFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || f.Anonymous {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Index
	}
	return out
}

// Invalid returns a *balancer.ConfigError for policy and field.
func Invalid(policy, field, format string, args ...any) error {
	return &balancer.ConfigError{Policy: policy, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Duration is a time.Duration written in JSON as a Go duration string,
// such as "10s" or "250ms", the form gRPC service configs use.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"10s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration string such as \"10s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Child is a child policy written as a gRPC loadBalancingConfig list, such
// as [{"wayfinder_weighted_round_robin":{}},{"round_robin":{}}]: the first
// entry whose policy is registered is used, with its config parsed by that
// policy, as gRPC does for the top-level list.
type Child struct {
	Builder gbalancer.Builder
	Config  serviceconfig.LoadBalancingConfig // nil if the policy takes no config
}

// DefaultChild returns the child used when none is configured: name, which
// must be registered, with its default config.
func DefaultChild(name string) Child {
	b := gbalancer.Get(name)
	c := Child{Builder: b}
	if p, ok := b.(gbalancer.ConfigParser); ok {
		c.Config, _ = p.ParseConfig(json.RawMessage("{}"))
	}
	return c
}

// Name returns the child policy's name.
func (c Child) Name() string {
	if c.Builder == nil {
		return ""
	}
	return c.Builder.Name()
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *Child) UnmarshalJSON(b []byte) error {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf(`want a loadBalancingConfig list such as [{"round_robin":{}}], got %.40s`, b)
	}
	var names []string
	for i, entry := range list {
		if len(entry) != 1 {
			return fmt.Errorf("entry %d has %d policies, want exactly one", i, len(entry))
		}
		for name, js := range entry {
			names = append(names, name)
			bb := gbalancer.Get(name)
			if bb == nil {
				continue
			}
			c.Builder, c.Config = bb, nil
			if p, ok := bb.(gbalancer.ConfigParser); ok {
				if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
					js = json.RawMessage("{}")
				}
				cfg, err := p.ParseConfig(js)
				if err != nil {
					return fmt.Errorf("policy %q: %v", name, err)
				}
				c.Config = cfg
			}
			return nil
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("empty list: name at least one policy")
	}
	return fmt.Errorf("none of the policies %q is registered (import its package)", names)
}

// Builder is a policy's balancer.Builder, from its name, its config
// parser and a function that builds the balancer with the default
// config (gRPC hands it the real one with the first
// UpdateClientConnState).
type Builder[C serviceconfig.LoadBalancingConfig] struct {
	Policy string
	Parse  func(json.RawMessage) (C, error)
	New    func(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, defaults C) gbalancer.Balancer
}

// Name implements balancer.Builder.
func (b Builder[C]) Name() string { return b.Policy }

// ParseConfig implements balancer.ConfigParser.
func (b Builder[C]) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	cfg, err := b.Parse(js)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// Build implements balancer.Builder.
func (b Builder[C]) Build(cc gbalancer.ClientConn, opts gbalancer.BuildOptions) gbalancer.Balancer {
	cfg, _ := b.Parse(nil)
	return b.New(cc, opts, cfg)
}
