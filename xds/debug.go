package xds

import (
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/debugpage"
)

// DebugHandler returns a page that shows what s serves each client: per
// ADS stream, the client's node ID and, per resource type, the names it
// asks for, the version last sent, the version it last accepted, and its
// error if it rejected the last response (NACK); and s's Stats. Mount it
// beside Wayfinder's debug page, for example:
//
//	http.Handle("/debug/wayfinder/xds", xds.DebugHandler(srv))
//
// The same data is served as HTML and, with ?format=json or an Accept
// header of application/json, as JSON. Node IDs and NACK messages come
// from clients; the HTML escapes them.
func DebugHandler(s *Server) http.Handler { return debugHandler{s} }

type debugHandler struct{ s *Server }

// debugView is the page's data and its JSON form.
type debugView struct {
	Time      time.Time     `json:"time"`
	Streams   int           `json:"streams"`
	Services  int           `json:"services"`
	NACKs     int64         `json:"nacks"`
	Outages   int64         `json:"outages"`
	Responses int64         `json:"responses"`
	Clients   []debugClient `json:"clients"`
}

type debugClient struct {
	Node  string      `json:"node"`
	Delta bool        `json:"delta"`
	Types []debugType `json:"types"`
}

type debugType struct {
	Type  string   `json:"type"` // the type URL's last part, such as "Cluster"
	Names []string `json:"names"`
	Sent  string   `json:"sent"`
	Acked string   `json:"acked"`
	NACK  string   `json:"nack,omitempty"`
}

func (h debugHandler) view() debugView {
	st := h.s.Stats()
	v := debugView{Time: time.Now(), Streams: st.Streams, Services: st.Services, NACKs: st.NACKs, Outages: st.Outages, Responses: st.Responses}
	for _, c := range h.s.Clients() { // sorted by node
		dc := debugClient{Node: c.Node, Delta: c.Delta}
		for _, t := range c.Types {
			name := t.TypeURL[strings.LastIndex(t.TypeURL, ".")+1:]
			dc.Types = append(dc.Types, debugType{Type: name, Names: t.Names, Sent: t.Sent, Acked: t.Acked, NACK: t.NACK})
		}
		v.Clients = append(v.Clients, dc)
	}
	return v
}

// ServeHTTP implements http.Handler.
func (h debugHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	debugpage.Serve(w, r, h.view(), debugPage)
}

var debugPage = template.Must(template.New("xds").Parse(`<!DOCTYPE html>
<html><head><title>Wayfinder xDS</title>
<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}.nack{color:#b00}</style>
</head><body>
<h1>Wayfinder xDS server</h1>
<p>{{.Time.Format "2006-01-02 15:04:05 MST"}}: {{.Streams}} streams, {{.Services}} services, {{.Responses}} responses sent, {{.NACKs}} NACKs, {{.Outages}} registry errors.</p>
{{range .Clients}}
<h2>{{.Node}}{{if .Delta}} (Delta){{end}}</h2>
<table><tr><th>type</th><th>names</th><th>sent</th><th>acked</th><th>status</th></tr>
{{range .Types}}<tr><td>{{.Type}}</td><td>{{range $i, $n := .Names}}{{if $i}}, {{end}}{{$n}}{{end}}</td><td>{{.Sent}}</td><td>{{.Acked}}</td>
<td>{{if .NACK}}<span class="nack">NACK: {{.NACK}}</span>{{else if and .Sent (eq .Sent .Acked)}}synced{{else if .Sent}}waiting for the client{{else}}nothing sent yet{{end}}</td></tr>
{{end}}</table>
{{else}}<p>No client is connected.</p>{{end}}
</body></html>
`))
