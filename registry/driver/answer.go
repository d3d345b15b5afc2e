package driver

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// AnswerCheck is an http.RoundTripper for a backend whose registry
// speaks HTTP. It refuses an answer that no server of the backend's kind
// gives (a web page from a proxy, or another program on the registry's
// port), so that the backend reads it as registry.CauseNotRegistry
// instead of decoding it, or taking a page served with 200 for a
// success. What the server may answer is the backend's judgement
// (Accept); the rest is the same for every backend: an answer without a
// Content-Type is passed on, and a refused one is closed, its status,
// Content-Type and the start of its body put in the error.
type AnswerCheck struct {
	// Next makes the requests; nil means http.DefaultTransport.
	Next http.RoundTripper
	// Accept reports whether a server of the backend's kind may answer
	// with this status code and media type (the Content-Type without
	// its parameters, in lower case; empty if it does not parse). Nil
	// accepts every answer.
	Accept func(status int, mediaType string) bool
	// NotRegistry is the backend's sentinel that a refusal wraps, for
	// errors.Is; nil means ErrNotRegistry.
	NotRegistry error
}

// ErrNotRegistry is what AnswerCheck's refusals wrap when it has no
// NotRegistry of its own.
var ErrNotRegistry = errors.New("not an answer of the registry's server")

// RoundTrip implements http.RoundTripper.
func (t AnswerCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err != nil || t.Accept == nil {
		return resp, err
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		return resp, nil
	}
	mt, _, _ := mime.ParseMediaType(ct)
	if t.Accept(resp.StatusCode, mt) {
		return resp, nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	sentinel := t.NotRegistry
	if sentinel == nil {
		sentinel = ErrNotRegistry
	}
	return nil, fmt.Errorf("%w: HTTP %d with Content-Type %q: %q", sentinel, resp.StatusCode, ct, snippet(head))
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach
// Next.
func (t AnswerCheck) CloseIdleConnections() {
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	if c, ok := next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// snippet is the start of a body, on one line, for an error message.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
