package driver_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// TestAnswerCheck runs real requests to a loopback server that answers
// like a registry (JSON, plain-text errors, no Content-Type) and like
// something else (a web page), through an AnswerCheck whose Accept is
// Consul's judgement.
func TestAnswerCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			io.WriteString(w, `{"ok":true}`)
		case "/error":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "No cluster leader")
		case "/bare":
			w.Header()["Content-Type"] = nil // no sniffing: no Content-Type at all
			io.WriteString(w, "[]")
		case "/page":
			w.Header().Set("Content-Type", "Text/HTML; charset=utf-8")
			io.WriteString(w, "<html>\n  <body>   Welcome to nginx!</body></html>"+strings.Repeat(" filler", 100))
		}
	}))
	defer srv.Close()
	errMine := errors.New("not an answer of mine")
	accept := func(status int, mt string) bool {
		return mt != "text/html" && (status/100 != 2 || mt == "application/json")
	}

	for _, tc := range []struct {
		name    string
		check   driver.AnswerCheck
		path    string
		wantErr error // nil: the answer is passed on
	}{
		{"json", driver.AnswerCheck{Accept: accept, NotRegistry: errMine}, "/json", nil},
		{"plain-text error", driver.AnswerCheck{Accept: accept, NotRegistry: errMine}, "/error", nil},
		{"no content type", driver.AnswerCheck{Accept: accept, NotRegistry: errMine}, "/bare", nil},
		{"web page", driver.AnswerCheck{Accept: accept, NotRegistry: errMine}, "/page", errMine},
		{"web page, default sentinel", driver.AnswerCheck{Accept: accept}, "/page", driver.ErrNotRegistry},
		{"web page, no judgement", driver.AnswerCheck{}, "/page", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			tc.check.Next = tr
			hc := &http.Client{Transport: tc.check}
			resp, err := hc.Get(srv.URL + tc.path)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("GET %s: %v, want the answer", tc.path, err)
				}
				defer resp.Body.Close()
				if _, err := io.ReadAll(resp.Body); err != nil {
					t.Errorf("reading the body: %v", err)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET %s: HTTP %d passed on, want an error wrapping %v", tc.path, resp.StatusCode, tc.wantErr)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("GET %s: %v, want it to wrap %v", tc.path, err, tc.wantErr)
			}
			for _, want := range []string{"HTTP 200", `"Text/HTML; charset=utf-8"`, "<html> <body> Welcome to nginx!"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long, want the body cut short: %q", len(err.Error()), err)
			}
		})
	}
}

// TestAnswerCheckClosesRefused checks that a refused answer's body is
// closed, so its connection is not leaked, and that
// CloseIdleConnections reaches Next.
func TestAnswerCheckClosesRefused(t *testing.T) {
	next := &recordingTransport{}
	check := driver.AnswerCheck{Next: next, Accept: func(int, string) bool { return false }}
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := check.RoundTrip(req); err == nil || resp != nil {
		t.Fatalf("RoundTrip = %v, %v; want no answer and an error", resp, err)
	}
	if !next.body.closed {
		t.Error("the refused answer's body was not closed")
	}
	check.CloseIdleConnections()
	if !next.idleClosed {
		t.Error("CloseIdleConnections did not reach Next")
	}
}

type recordingTransport struct {
	body       *closeRecorder
	idleClosed bool
}

func (t *recordingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	t.body = &closeRecorder{Reader: strings.NewReader("<html></html>")}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/html"}}, Body: t.body}, nil
}

func (t *recordingTransport) CloseIdleConnections() { t.idleClosed = true }

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error {
	c.closed = true
	return nil
}
