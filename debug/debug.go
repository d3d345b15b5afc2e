// Package debug serves a page that shows what discovery is doing: each
// watched service with its instances and attributes, whether its view is
// fresh, its last error and staleness, the registry index or revision of
// the last set read (resolver.WatchInfo.Index), each named ClientConn's
// state, and each Wayfinder load-balancing policy with its endpoints'
// state, weight and statistics (P2C's EWMA latency and calls in flight,
// outlier ejection's ejections, zone-aware's zones and spill-over state,
// and calls picked while inspect.CountPicks is in effect).
// Mount it where operators can reach it, for example:
//
//	http.Handle("/debug/wayfinder", debug.NewHandler(debug.WithCache(resolver.DefaultCache())))
//
// The same data is served as HTML and, with ?format=json or an Accept
// header of application/json, as JSON.
package debug

import (
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/internal/debugpage"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Handler serves the debug view.
type Handler struct {
	caches []*resolver.Cache
	now    func() time.Time

	mu    sync.Mutex // guards conns
	conns map[string]*grpc.ClientConn
}

// Option configures a Handler.
type Option func(*Handler)

// WithCache adds a resolver cache whose watches the page shows. Without
// any, the page shows resolver.DefaultCache.
func WithCache(c *resolver.Cache) Option { return func(h *Handler) { h.caches = append(h.caches, c) } }

// NewHandler returns a debug handler.
func NewHandler(opts ...Option) *Handler {
	h := &Handler{now: time.Now, conns: map[string]*grpc.ClientConn{}}
	for _, o := range opts {
		o(h)
	}
	if len(h.caches) == 0 {
		h.caches = []*resolver.Cache{resolver.DefaultCache()}
	}
	return h
}

// AddClientConn shows cc under name. The page shows its target and
// connectivity state.
func (h *Handler) AddClientConn(name string, cc *grpc.ClientConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns[name] = cc
}

// RemoveClientConn stops showing the ClientConn called name.
func (h *Handler) RemoveClientConn(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, name)
}

// View is what the page shows; it is also the JSON form.
type View struct {
	Time        time.Time            `json:"time"`
	Watches     []resolver.WatchInfo `json:"watches"`
	ClientConns []ConnInfo           `json:"client_conns"`
	Balancers   []inspect.Balancer   `json:"balancers"` // live Wayfinder policies and their endpoints
}

// ConnInfo describes a named ClientConn.
type ConnInfo struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	State  string `json:"state"`
}

// Snapshot returns the current view.
func (h *Handler) Snapshot() View {
	v := View{Time: h.now()}
	for _, c := range h.caches {
		v.Watches = append(v.Watches, c.Watches()...)
	}
	h.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(h.conns)) {
		cc := h.conns[name]
		v.ClientConns = append(v.ClientConns, ConnInfo{Name: name, Target: cc.CanonicalTarget(), State: cc.GetState().String()})
	}
	h.mu.Unlock()
	v.Balancers = inspect.Balancers()
	return v
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	debugpage.Serve(w, r, h.Snapshot(), page)
}

// summary is the line above a balancer's table: its policy statistics
// (zone-aware: local zone, mode, order and each zone's share), its
// picks when it counts them and outlier ejection's ejections.
func summary(b inspect.Balancer) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(b.Stats)) {
		kv = append(kv, k+"="+b.Stats[k])
	}
	if b.CountsPicks {
		kv = append(kv, "picks="+strconv.FormatUint(b.Picks, 10))
	}
	if b.Policy == "outlier" {
		kv = append(kv, "ejections="+strconv.FormatUint(b.Ejections, 10))
	}
	return strings.Join(kv, ", ")
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"join": strings.Join,
	"meta": func(m map[string]string) string {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			kv = append(kv, k+"="+m[k])
		}
		return strings.Join(kv, ", ")
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Millisecond).String() + " ago"
	},
	"dur":     func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"summary": summary,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Wayfinder discovery</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0 1em} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3} tr.ejected{color:#b00020} section.nested{margin-left:2em} .fresh{color:#176c1a;font-weight:600} .stale{color:#b00020;font-weight:600}
code{background:#f6f6f6;padding:0 .2em}
</style></head><body>
<h1>Wayfinder discovery</h1>
<p>At {{.Time.Format "2006-01-02 15:04:05.000 MST"}}. <a href="?format=json">JSON</a></p>
<h2>Watched services ({{len .Watches}})</h2>
{{range .Watches}}{{$now := $.Time}}
<section class="watch" id="watch-{{.Service}}">
<h3><code>{{.Service}}</code> in <code>{{.Registry}}</code>
{{if .Fresh}}<span class="fresh">fresh</span>{{else}}<span class="stale">stale {{dur .Staleness}}</span>{{end}}</h3>
<p>{{len .Instances}} instance(s); {{.Updates}} update(s), {{.Errors}} error(s); changed {{ago $now .LastChange}};
{{if .Index}}registry index <code class="index">{{.Index}}</code>;{{end}}
{{.Resolvers}} ClientConn resolver(s) share {{.Upstreams}} upstream watch call(s).
{{if .LastError}}<br>Last error: <code class="error">{{.LastError}}</code>{{end}}</p>
<table><tr><th>ID</th><th>Address</th><th>Version</th><th>Zone</th><th>Weight</th><th>Tags</th><th>Metadata</th></tr>
{{range .Instances}}<tr class="instance"><td>{{.ID}}</td><td>{{.Address}}</td><td>{{.Version}}</td><td>{{.Zone}}</td><td>{{.EffectiveWeight}}</td><td>{{join .Tags ", "}}</td><td>{{meta .Metadata}}</td></tr>
{{else}}<tr><td colspan="7">no instances</td></tr>{{end}}</table>
{{if .FieldProblems}}<p>Fields the backend could not read (the instance is kept, with the field's default):</p>
<table class="field-problems"><tr><th>ID</th><th>Field</th><th>Value</th><th>Reason</th></tr>
{{range .FieldProblems}}<tr class="field-problem"><td>{{.ID}}</td><td><code>{{.Field}}</code></td><td><code>{{.Value}}</code></td><td>{{.Reason}}</td></tr>{{end}}</table>{{end}}
</section>
{{else}}<p>No service is being watched.</p>{{end}}
<h2>ClientConns ({{len .ClientConns}})</h2>
{{if .ClientConns}}<table><tr><th>Name</th><th>Target</th><th>State</th></tr>
{{range .ClientConns}}<tr class="conn"><td>{{.Name}}</td><td><code>{{.Target}}</code></td><td>{{.State}}</td></tr>{{end}}</table>
{{else}}<p>None registered with the page.</p>{{end}}
<h2>Load balancers ({{len .Balancers}})</h2>
{{range .Balancers}}{{$b := .}}
<section class="balancer policy-{{.Policy}}{{if .Parent}} nested{{end}}" id="balancer-{{.ID}}"><h3><code>{{.Policy}}</code> #{{.ID}} for <code>{{.Target}}</code>{{if .Parent}} inside <a href="#balancer-{{.Parent}}">#{{.Parent}}</a>{{end}}</h3>
{{with summary .}}<p class="balancer-stats">{{.}}</p>{{end}}
<table><tr><th>Address</th><th>Instance</th><th>Zone</th><th>State</th><th>Weight</th><th>Statistics</th></tr>
{{range .Endpoints}}<tr class="endpoint{{if .Ejected}} ejected{{end}}"><td>{{.Addr}}</td><td>{{.Instance}}</td><td>{{.Zone}}</td><td>{{.State}}</td><td>{{.Weight}}</td><td>{{if $b.CountsPicks}}picks={{.Picks}}{{if .Stats}}, {{end}}{{end}}{{meta .Stats}}</td></tr>
{{else}}<tr><td colspan="6">no endpoints</td></tr>{{end}}</table></section>
{{else}}<p>No ClientConn in this process uses a Wayfinder policy.</p>{{end}}
</body></html>
`))
