// Package debugpage serves a debug view as HTML or JSON, the one way
// Wayfinder's debug pages (package debug, the xds module's DebugHandler)
// answer: GET and HEAD only, never cached, JSON when asked for with
// ?format=json or an Accept header, else the page's template.
package debugpage
