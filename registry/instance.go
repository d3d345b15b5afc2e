package registry

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits enforced by Instance.Validate. They are the strictest common
// denominator of the backends (Consul's service metadata rules among
// them), so an instance that validates registers on every backend and
// swapping backends never turns valid input into an error.
const (
	MaxNameLen         = 128         // service names, IDs, versions, zones
	MaxTags            = 64          // tags per instance
	MaxTagLen          = 255         // bytes per tag
	MaxMetadataPairs   = 48          // user metadata pairs (Consul allows 64 in all; some are Wayfinder's own)
	MaxMetaKeyLen      = 128         // bytes per metadata key
	MaxMetaValueLen    = 512         // bytes per metadata value
	MaxWeight          = 1e6         // largest accepted Weight
	DefaultWeight      = 1           // the weight used when Weight is 0
	ReservedMetaPrefix = "wayfinder" // metadata keys the backends use for Version, Zone, Weight
)

// Instance is one running copy of a service, reachable at Address.
// It is a value type: copy it freely, but use Clone to copy Tags and
// Metadata when the copy will be changed.
type Instance struct {
	// ID identifies the instance within its service. It must be unique:
	// two processes that register the same ID overwrite each other.
	// NewID returns a random one.
	ID string
	// Service is the logical service name, such as "hello".
	Service string
	// Address is host:port, dialable by clients. Unspecified hosts
	// (0.0.0.0, ::) are rejected: clients cannot dial them.
	Address string
	// Version is the instance's release, such as "v1.4.2". Optional.
	Version string
	// Zone is the failure domain, such as "eu-west-1a". Optional.
	Zone string
	// Weight is the relative share of traffic for weighted policies.
	// 0 means DefaultWeight; the valid range is 0..MaxWeight.
	Weight int
	// Tags are free-form labels, such as "canary". Order is kept.
	Tags []string
	// Metadata is free-form string data. Keys match [A-Za-z0-9_-]+.
	Metadata map[string]string
	// Registered is when a Wayfinder Registrar wrote this version of the
	// instance: the registrant's clock at the Register call that first
	// registered it or last changed it. Repeating Register with an equal
	// instance, and a backend's own re-registration after its registry
	// lost the instance (a Consul agent restart, an expired etcd lease),
	// keep the original stamp. Backends set it on Lookup and Watch; it is
	// zero for instances written by other tools or older versions.
	// Register ignores the caller's value, Validate does not check it and
	// Equal does not compare it: it describes the registration, not the
	// instance, so a stamp alone never makes a change. The resolver uses
	// it to measure propagation latency (resolver.MetricPropagation).
	Registered time.Time `json:",omitzero"`
}

// NewID returns a random 128-bit instance ID in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

// EffectiveWeight returns Weight, or DefaultWeight if Weight is 0.
func (i Instance) EffectiveWeight() int {
	if i.Weight == 0 {
		return DefaultWeight
	}
	return i.Weight
}

// Clone returns a deep copy of i.
func (i Instance) Clone() Instance {
	i.Tags = slices.Clone(i.Tags)
	i.Metadata = maps.Clone(i.Metadata)
	return i
}

// Equal reports whether i and o are the same in every field but
// Registered. A nil and an empty Tags or Metadata are equal.
func (i Instance) Equal(o Instance) bool {
	return i.ID == o.ID && i.Service == o.Service && i.Address == o.Address &&
		i.Version == o.Version && i.Zone == o.Zone && i.Weight == o.Weight &&
		slices.Equal(i.Tags, o.Tags) && maps.Equal(i.Metadata, o.Metadata)
}

// Key returns "service/id", unique across a registry.
func (i Instance) Key() string { return i.Service + "/" + i.ID }

func (i Instance) String() string {
	return fmt.Sprintf("%s/%s@%s", i.Service, i.ID, i.Address)
}

// InvalidError describes why an instance, or one of its fields, is invalid.
// It wraps ErrInvalidInstance.
type InvalidError struct {
	Field  string // "ID", "Address", "Metadata[\"k\"]", ...
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("registry: invalid instance: %s: %s", e.Field, e.Reason)
}

func (e *InvalidError) Unwrap() error { return ErrInvalidInstance }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports the first problem with i as an *InvalidError, or nil.
func (i Instance) Validate() error {
	if err := ValidateService(i.Service); err != nil {
		return &InvalidError{Field: "Service", Reason: strings.TrimPrefix(err.Error(), ErrInvalidService.Error()+": ")}
	}
	if err := checkName("ID", i.ID, true); err != nil {
		return err
	}
	if err := validateAddress(i.Address); err != nil {
		return err
	}
	if err := checkText("Version", i.Version, MaxNameLen); err != nil {
		return err
	}
	if err := checkText("Zone", i.Zone, MaxNameLen); err != nil {
		return err
	}
	if i.Weight < 0 || i.Weight > MaxWeight {
		return invalid("Weight", "%d is out of range 0..%d", i.Weight, int(MaxWeight))
	}
	if len(i.Tags) > MaxTags {
		return invalid("Tags", "%d tags, at most %d allowed", len(i.Tags), MaxTags)
	}
	for n, tag := range i.Tags {
		field := fmt.Sprintf("Tags[%d]", n)
		if tag == "" {
			return invalid(field, "empty tag")
		}
		if err := checkText(field, tag, MaxTagLen); err != nil {
			return err
		}
	}
	if len(i.Metadata) > MaxMetadataPairs {
		return invalid("Metadata", "%d pairs, at most %d allowed", len(i.Metadata), MaxMetadataPairs)
	}
	for _, k := range slices.Sorted(maps.Keys(i.Metadata)) {
		field := fmt.Sprintf("Metadata[%q]", k)
		switch {
		case k == "":
			return invalid("Metadata", "empty key")
		case len(k) > MaxMetaKeyLen:
			return invalid(field, "key is %d bytes, at most %d allowed", len(k), MaxMetaKeyLen)
		case !isMetaKey(k):
			return invalid(field, "key may contain only ASCII letters, digits, '_' and '-'")
		case strings.HasPrefix(strings.ToLower(k), ReservedMetaPrefix), strings.HasPrefix(strings.ToLower(k), "consul-"):
			return invalid(field, "key prefixes %q and \"consul-\" are reserved", ReservedMetaPrefix)
		}
		if err := checkText(field, i.Metadata[k], MaxMetaValueLen); err != nil {
			return err
		}
	}
	return nil
}

// ValidateService returns an error wrapping ErrInvalidService if name is
// not a valid service name: 1 to MaxNameLen bytes of ASCII letters, digits,
// '.', '_' and '-', starting with a letter or digit. The rule keeps names
// safe as Consul service names, etcd key segments and gRPC target paths.
func ValidateService(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidService)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidService, len(name), MaxNameLen)
	}
	for n, r := range name {
		ok := r < utf8.RuneSelf && (isAlnum(byte(r)) || (n > 0 && (r == '.' || r == '_' || r == '-')))
		if !ok {
			return fmt.Errorf("%w: %q: character %q at offset %d: use ASCII letters, digits, '.', '_' and '-', starting with a letter or digit", ErrInvalidService, name, r, n)
		}
	}
	return nil
}

// checkName checks an ID: like a service name but '/' and control
// characters are the only bytes forbidden, so UUIDs, host names and
// "host:port" all work.
func checkName(field, s string, required bool) error {
	if s == "" {
		if required {
			return invalid(field, "empty")
		}
		return nil
	}
	if err := checkText(field, s, MaxNameLen); err != nil {
		return err
	}
	if strings.ContainsAny(s, "/ \t") {
		return invalid(field, "%q contains '/' or whitespace", s)
	}
	return nil
}

func checkText(field, s string, max int) error {
	if len(s) > max {
		return invalid(field, "%d bytes, at most %d allowed", len(s), max)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid(field, "contains control character %U", r)
		}
	}
	return nil
}

func validateAddress(addr string) error {
	if addr == "" {
		return invalid("Address", "empty; want host:port")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalid("Address", "%q is not host:port: %v", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strings.HasPrefix(port, "+") {
		return invalid("Address", "%q: port %q is not in 1..65535", addr, port)
	}
	if host == "" {
		return invalid("Address", "%q: empty host", addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return invalid("Address", "%q: unspecified host %s cannot be dialled; register the address clients should use", addr, host)
		}
		if ip.Zone() != "" {
			return invalid("Address", "%q: IPv6 zones are not portable across hosts", addr)
		}
		return nil
	}
	if len(host) > 253 {
		return invalid("Address", "host name is %d bytes, at most 253 allowed", len(host))
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return invalid("Address", "%q: host has character %q; want an IP address or a DNS name", addr, c)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

func isMetaKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
