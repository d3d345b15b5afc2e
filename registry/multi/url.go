package multi

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Scheme is the URL scheme of a registry composed of others.
const Scheme = "multi"

func init() {
	driver.RegisterScheme(Scheme, &URLOpener{})
}

// params are multi's query parameters, in the order errors list them.
var params = []string{"read", "write", "shadow"}

// URLOpener opens multi:// URLs. Its members are opened through Mux,
// which registry.URLMux sets to itself (driver.MuxOpener) before every
// open, so that the members of a multi URL opened by a mux of the
// program's own are opened by that mux, with its backends and options;
// the zero value in registry.DefaultURLMux opens them through
// registry.DefaultURLMux. Logger, set by URLMux.OpenWithLogger, is given
// to every member and receives multi's own logs.
type URLOpener struct {
	// Mux opens the members; nil means registry.DefaultURLMux.
	Mux *registry.URLMux
	// Logger receives the members' and multi's logs; nil means the
	// members' defaults and slog.Default.
	Logger *slog.Logger
	// MeterProvider records multi's metric (WithMeterProvider); nil
	// means OpenTelemetry's global provider.
	MeterProvider metric.MeterProvider
}

var (
	_ driver.LoggerOpener = (*URLOpener)(nil)
	_ driver.MuxOpener    = (*URLOpener)(nil)
)

// WithMux implements driver.MuxOpener: a copy of o with Mux m.
func (o *URLOpener) WithMux(m *registry.URLMux) registry.Opener {
	c := *o
	c.Mux = m
	return &c
}

// WithLogger implements driver.LoggerOpener: a copy of o with Logger l.
func (o *URLOpener) WithLogger(l *slog.Logger) registry.Opener {
	c := *o
	c.Logger = l
	return &c
}

func (o *URLOpener) mux() *registry.URLMux {
	if o.Mux != nil {
		return o.Mux
	}
	return registry.DefaultURLMux()
}

// ValidateURL implements registry.Opener: multi's own parameters, then
// each member URL as the mux would validate it.
func (o *URLOpener) ValidateURL(u *url.URL) error {
	_, err := o.parse(u)
	return err
}

// OpenRegistryURL implements registry.Opener. It opens every member
// through the mux (none of which may block on the network) and closes
// those already opened if one fails.
func (o *URLOpener) OpenRegistryURL(ctx context.Context, u *url.URL) (registry.Registry, error) {
	c, err := o.parse(u)
	if err != nil {
		return nil, err
	}
	opened := map[string]registry.Registry{}
	closeAll := func() {
		for _, r := range opened {
			r.Close()
		}
	}
	var read, write, shadow []Member
	for _, m := range c.members {
		r, ok := opened[m.raw]
		if !ok {
			r, err = o.mux().OpenWithLogger(ctx, m.raw, o.Logger)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("multi: %s member %s: %w", m.role, m.name, err)
			}
			opened[m.raw] = r
		}
		mem := Member{Name: m.name, Registry: r}
		switch m.role {
		case "read":
			read = append(read, mem)
		case "write":
			write = append(write, mem)
		default:
			shadow = append(shadow, mem)
		}
	}
	reg, err := New(read, write, WithLogger(o.Logger), WithShadow(shadow...), WithMeterProvider(o.MeterProvider))
	if err != nil {
		closeAll()
		return nil, err
	}
	return reg, nil
}

// memberURL is one member as the URL lists it.
type memberURL struct {
	role string // "read", "write" or "shadow"
	raw  string // the member URL, %-decoded once, as the mux opens it
	name string // redacted, for messages
}

type config struct{ members []memberURL }

// parse reads a multi URL: its own rules first (no host, a member query
// that leaks into multi's), then the query by driver.ReadURL's rules,
// then each member.
func (o *URLOpener) parse(u *url.URL) (config, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", registry.ErrInvalidURL, driver.Redact(u), fmt.Sprintf(format, args...))
	}
	if u.Host != "" {
		return config{}, bad("multi takes no host; name the members with read= and write=, as in multi://?read=consul://a:8500,etcd://b:2379&write=etcd://b:2379")
	}
	if err := leakedMemberQuery(u.RawQuery); err != nil {
		return config{}, bad("%v", err)
	}
	q, err := driver.ReadURL(u, Scheme, params...)
	if err != nil {
		return config{}, err
	}
	var c config
	reads := 0
	seen := map[string]bool{}
	for _, role := range params {
		v := q.String(role, "a comma-separated list of registry URLs")
		if v == "" {
			continue
		}
		if strings.HasPrefix(v, ",") || strings.HasSuffix(v, ",") || strings.Contains(v, ",,") {
			return config{}, bad("parameter %s: empty element; want a comma-separated list of registry URLs, such as %s=consul://a:8500,etcd://b:2379", role, role)
		}
		for i, raw := range splitMembers(v) {
			m, err := o.member(role, i+1, raw)
			if err != nil {
				return config{}, fmt.Errorf("%w: %s: %w", registry.ErrInvalidURL, driver.Redact(u), err)
			}
			if role == "read" {
				reads++
			}
			if seen[role+"\x00"+m.raw] {
				return config{}, bad("%s lists %s twice", role, m.name)
			}
			seen[role+"\x00"+m.raw] = true
			c.members = append(c.members, m)
		}
	}
	if err := q.Err(); err != nil {
		return config{}, err
	}
	if reads == 0 {
		return config{}, bad("no read member; want read=<registry URL>[,<registry URL>...], as in multi://?read=consul://a:8500,etcd://b:2379 (write= alone cannot serve lookups)")
	}
	return c, nil
}

// member checks the n-th member URL of role. Its errors name the member
// redacted, never its query or user information.
func (o *URLOpener) member(role string, n int, raw string) (memberURL, error) {
	if raw == "" {
		return memberURL{}, fmt.Errorf("%s member %d is empty", role, n)
	}
	mu, err := driver.ParseURL(Scheme, raw)
	if err != nil {
		return memberURL{}, fmt.Errorf("%s member %d: %w", role, n, err)
	}
	name := driver.Redact(mu)
	if mu.Scheme == Scheme {
		return memberURL{}, fmt.Errorf("%s member %s: a multi registry cannot be a member of another; list its members instead", role, name)
	}
	if _, ok := o.mux().Opener(mu.Scheme).(*URLOpener); ok {
		return memberURL{}, fmt.Errorf("%s member %s: scheme %q opens a multi registry, which cannot be a member of another", role, name, mu.Scheme)
	}
	if err := o.mux().ValidateURL(raw); err != nil {
		// The member's own error: it wraps ErrInvalidURL or
		// ErrUnknownScheme and redacts the member as its backend does.
		return memberURL{}, fmt.Errorf("%s member %s: %w", role, name, err)
	}
	return memberURL{role: role, raw: raw, name: name}, nil
}

// splitMembers splits a read= or write= value into member URLs: at each
// comma followed by a scheme and "://". A comma inside a member URL (an
// etcd host list, a Consul dc= list) is followed by no scheme, and so
// stays in its member: "consul://a:8500?dc=dc1,dc2,etcd://b:2379,c:2379"
// is two members.
func splitMembers(v string) []string {
	var out []string
	start := 0
	for i := 0; i < len(v); i++ {
		if v[i] == ',' && startsWithScheme(v[i+1:]) {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// startsWithScheme reports whether s starts with "<scheme>://", a
// scheme being a letter then letters, digits, '+', '-' or '.'.
func startsWithScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return strings.HasPrefix(s[i:], "://")
		default:
			return false
		}
	}
	return false
}

// leakedMemberQuery reports a parameter that multi does not know and
// that follows a member URL with a query of its own: the member's second
// parameter, which the member URL did not %-encode (its '&' as %26), so
// that it reads as multi's. Its value is never shown.
func leakedMemberQuery(raw string) error {
	var after string // the last read=/write= whose member has a query
	for piece := range strings.SplitSeq(raw, "&") {
		if piece == "" {
			continue
		}
		k, v, _ := strings.Cut(piece, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil // driver.ReadURL says so
		}
		if key == "read" || key == "write" || key == "shadow" {
			if dv, err := url.QueryUnescape(v); err == nil && strings.Contains(dv, "?") {
				after = key
			} else {
				after = ""
			}
			continue
		}
		if after != "" {
			return fmt.Errorf("parameter %q is not multi's: it follows a %s member URL with a query of its own, whose parameters after the first must be %%-encoded ('&' as %%26, or the whole member URL) so that they stay the member's", key, after)
		}
	}
	return nil
}
