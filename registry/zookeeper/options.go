package zookeeper

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper/internal/zk"
	"go.opentelemetry.io/otel/metric"
)

// Option configures New and OpenURL. Options override URL parameters
// and environment variables.
type Option func(*options)

type options struct {
	root       string
	timeout    time.Duration
	session    time.Duration
	logger     *slog.Logger
	meter      metric.MeterProvider
	user, pass string
	authSet    bool
	acl        []zk.ACL
}

func defaultOptions() options {
	return options{
		root:    DefaultRoot,
		timeout: DefaultTimeout,
		session: DefaultSessionTimeout,
		logger:  slog.New(slog.DiscardHandler),
	}
}

// WithRoot sets the root node: instances live at <root>/<service>/<id>
// (DefaultRoot). Kratos's registry writes under /microservices.
func WithRoot(root string) Option { return func(o *options) { o.root = root } }

// WithTimeout bounds every call (Register, Deregister, Lookup, Services,
// a watch's reads) whose context has no deadline (DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithSessionTimeout sets the session timeout asked of the server
// (DefaultSessionTimeout), which may clamp it to its own
// minSessionTimeout and maxSessionTimeout (by default 2 and 20 ticks).
// It is how long an instance outlives a process that dies without
// deregistering, and the client reads nothing for two thirds of it
// before it takes the connection for lost: a watch reports a silent
// server within that time.
func WithSessionTimeout(d time.Duration) Option { return func(o *options) { o.session = d } }

// WithLogger sets the logger for background events. The default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider records the Registry's metrics with mp; see metrics.go.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.meter = mp } }

// WithDigestAuth authenticates the session with ZooKeeper's digest
// scheme as user:password, overriding EnvAuth. The nodes the Registry
// creates then get the ACL "digest user: all, world: read" unless
// WithACL says otherwise.
func WithDigestAuth(user, password string) Option {
	return func(o *options) { o.user, o.pass, o.authSet = user, password, true }
}

// WithACL sets the ACL of the nodes the Registry creates (default: world
// all without credentials; digest user all and world read with them).
func WithACL(acl []zk.ACL) Option { return func(o *options) { o.acl = acl } }

func (o *options) validate() error {
	switch {
	case o.timeout <= 0:
		return fmt.Errorf("zookeeper: timeout %v, want > 0", o.timeout)
	case o.session < time.Second/10:
		return fmt.Errorf("zookeeper: session timeout %v, want at least 100ms", o.session)
	case o.logger == nil:
		return errors.New("zookeeper: nil logger")
	}
	return checkRoot(o.root)
}

// checkRoot accepts "/" and absolute paths without a trailing slash.
func checkRoot(root string) error {
	if root == "/" {
		return nil
	}
	if !strings.HasPrefix(root, "/") || strings.HasSuffix(root, "/") || strings.Contains(root, "//") {
		return fmt.Errorf("zookeeper: root %q: want an absolute path such as /wayfinder, without a trailing slash", root)
	}
	for seg := range strings.SplitSeq(root[1:], "/") {
		if seg == "." || seg == ".." || seg == "zookeeper" && root == "/zookeeper" {
			return fmt.Errorf("zookeeper: root %q: segment %q is reserved", root, seg)
		}
	}
	return nil
}

// credentials returns the digest user and password: the option's, else
// EnvAuth's ("user:password").
func (o *options) credentials() (user, pass string, err error) {
	if o.authSet {
		user, pass = o.user, o.pass
	} else if v := os.Getenv(EnvAuth); v != "" {
		var ok bool
		user, pass, ok = strings.Cut(v, ":")
		if !ok {
			return "", "", fmt.Errorf("zookeeper: %s has no ':'; want user:password", EnvAuth)
		}
	}
	if user != "" && pass == "" || user == "" && pass != "" {
		return "", "", fmt.Errorf("zookeeper: digest credentials need a user and a password")
	}
	return user, pass, nil
}
