package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// errNotConsul is an HTTP answer no Consul agent gives: a web page, or a
// success whose body is not JSON. The agent's driver.AnswerCheck
// returns it in place of the answer.
var errNotConsul = errors.New("not an answer of a Consul agent")

// bounded returns ctx, with the Registry's timeout if ctx has no
// deadline, and the bound that an error for a call made with it names.
func (r *Registry) bounded(ctx context.Context) (context.Context, context.CancelFunc, time.Duration) {
	if dl, ok := ctx.Deadline(); ok {
		c, cancel := context.WithCancel(ctx)
		return c, cancel, time.Until(dl).Round(time.Millisecond)
	}
	c, cancel := context.WithTimeout(ctx, r.cfg.timeout)
	return c, cancel, r.cfg.timeout
}

// unavailable is the one reading of a failed call to the agent: it
// returns err as a *registry.UnavailableError naming the agent (its
// redacted URL), op and the cause, bound being what the call waited.
//
//   - No answer (a deadline, WithUnavailableAfter's bound): CauseNoAnswer.
//   - Connection refused: CauseRefused.
//   - An answer no Consul agent gives (a 404 not in Consul's words, a web
//     page, a success that is not JSON, JSON of the wrong shape, a
//     health answer without X-Consul-Index): CauseNotRegistry.
//   - Consul's own errors (500 "No cluster leader", 429, 400, 403):
//     CauseServer; a 403 also wraps registry.ErrPermissionDenied.
//
// A cancelled context is the caller's doing, not the agent's: it is
// returned as it is, with op.
func (r *Registry) unavailable(op string, bound time.Duration, err error) error {
	if err == nil {
		return nil
	}
	var ue *registry.UnavailableError
	if errors.As(err, &ue) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("consul: %s: %w", op, err)
	}
	name := r.agentName(err)
	with := func(c registry.Cause, b time.Duration, e error) error {
		return &registry.UnavailableError{Registry: name, Op: op, Cause: c, Bound: b, Err: e}
	}
	var se api.StatusError
	var syn *json.SyntaxError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errSilent):
		return with(registry.CauseNoAnswer, r.live.bound, err)
	case errors.Is(err, errNotConsul), errors.Is(err, errProtocol),
		errors.As(err, &syn), errors.As(err, &ute),
		strings.Contains(err.Error(), "malformed HTTP"): // another protocol on the port
		return with(registry.CauseNotRegistry, 0, err)
	case errors.As(err, &se):
		switch {
		case se.Code == http.StatusForbidden:
			return with(registry.CauseServer, 0, fmt.Errorf("%w (the ACL token is missing, unknown or lacks permission; set it with WithToken or CONSUL_HTTP_TOKEN): %w", registry.ErrPermissionDenied, err))
		case se.Code == http.StatusNotFound && !isNotFound(err):
			// Consul's 404s name the unknown service or check.
			return with(registry.CauseNotRegistry, 0, err)
		}
		return with(registry.CauseServer, 0, err)
	}
	return driver.Unavailable(name, op, bound, err)
}

// agentName is how errors name the agent: r's redacted URL, or for a
// client from NewFromClient, whose address the API does not expose, the
// host of the failed request if err carries it.
func (r *Registry) agentName(err error) string {
	if r.name != "" {
		return r.name
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
			return Scheme + "://" + u.Host
		}
	}
	return Scheme + "://"
}

// agentURL returns the agent at address as errors name it: consul://
// and host:port (or the socket path), with no scheme, credentials or
// path.
func agentURL(address string) string {
	a := address
	for _, p := range []string{"http://", "https://", "unix://"} {
		a = strings.TrimPrefix(a, p)
	}
	if strings.HasPrefix(address, "unix://") {
		return Scheme + "://" + a
	}
	if i := strings.IndexByte(a, '/'); i >= 0 {
		a = a[:i]
	}
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		a = a[i+1:]
	}
	return Scheme + "://" + a
}

// agentAnswer is what a Consul agent may answer (driver.AnswerCheck
// refuses the rest as errNotConsul): never a web page, and on success
// JSON. Consul answers every endpoint Wayfinder uses with JSON on success
// and plain text on errors; without this check a server that answers 200
// with a page to everything would accept every registration.
func agentAnswer(status int, mediaType string) bool {
	return mediaType != "text/html" && (status/100 != 2 || mediaType == "application/json")
}

// checked returns a copy of hc whose transport is wrapped in a
// driver.AnswerCheck with agentAnswer; hc itself is not changed.
func checked(hc *http.Client) *http.Client {
	c := *hc
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = driver.AnswerCheck{Next: next, Accept: agentAnswer, NotRegistry: errNotConsul}
	return &c
}

// isNotFound reports the agent's answer for an unknown check or service
// (a 404 in Consul's words, or an update of a check without a TTL): the
// agent lost the registration. A 404 in other words is not Consul's.
func isNotFound(err error) bool {
	if err == nil || errors.Is(err, errNotConsul) {
		return false
	}
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "unknown check") || strings.Contains(s, "unknown service") || strings.Contains(s, "does not have associated ttl")
}

// isTooManyRequests reports a 429: the agent's per-client connection or
// rate limit.
func isTooManyRequests(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusTooManyRequests
}

// isPermanent reports 4xx answers other than 404 and 429: retrying the
// same request cannot help until someone changes configuration.
func isPermanent(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusNotFound && se.Code != http.StatusTooManyRequests
}
