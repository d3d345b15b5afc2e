package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// The server child: an xDS server over an in-process memory registry,
// alone in its process so that its CPU time, heap and bytes written are
// its own. The parent drives it with one JSON command a line on stdin
// and reads one JSON answer a line on stdout; it ends when stdin closes.

// command is one line the parent sends the server child.
type command struct {
	Op      string `json:"op"` // add, del, bulk, stats, heap
	Service string `json:"service,omitempty"`
	ID      string `json:"id,omitempty"`
	Addr    string `json:"addr,omitempty"`
	N       int    `json:"n,omitempty"`      // bulk: instances to add, on ports 10000+i of 127.0.0.1 (nobody connects to them)
	Synced  bool   `json:"synced,omitempty"` // stats: first wait (at most 10 s) until every stream acknowledged what it was sent
}

// childStats is the server child's answer to stats and heap.
type childStats struct {
	Addr         string `json:"addr,omitempty"`
	Err          string `json:"err,omitempty"`
	CPUNanos     int64  `json:"cpu_ns"`        // user+system time of the process
	BytesWritten int64  `json:"bytes_written"` // by the xDS server to its clients' connections
	Responses    int64  `json:"responses"`
	Streams      int    `json:"streams"`
	Synced       int    `json:"synced"` // streams whose every type's last response is acknowledged
	NACKs        int64  `json:"nacks"`
	Services     int    `json:"services"`
	Watches      int64  `json:"watches"`     // upstream watches open on the registry
	WatchCalls   int64  `json:"watch_calls"` // Watch calls ever made
	HeapBytes    uint64 `json:"heap_bytes,omitempty"`
	Goroutines   int    `json:"goroutines,omitempty"`
}

func serveChild(stdin io.Reader, stdout io.Writer) error {
	store := memory.NewStore()
	reg := store.Open()
	defer reg.Close()
	up := &countingDiscovery{Discovery: store.Open()}
	defer up.Discovery.(*memory.Registry).Close()
	srv, err := xds.New(up)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cl := &countingListener{Listener: lis}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(cl) }()
	defer func() {
		_ = srv.Close()
		<-served
	}()
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(childStats{Addr: lis.Addr().String()}); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdin)
	ctx := context.Background()
	for sc.Scan() {
		var c command
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return fmt.Errorf("command %q: %w", sc.Text(), err)
		}
		var out childStats
		switch c.Op {
		case "add":
			err = reg.Register(ctx, registry.Instance{Service: c.Service, ID: c.ID, Address: c.Addr})
		case "del":
			err = reg.Deregister(ctx, registry.Instance{Service: c.Service, ID: c.ID})
		case "bulk":
			for i := range c.N {
				if err = reg.Register(ctx, registry.Instance{Service: c.Service, ID: fmt.Sprintf("%s-%05d", c.ID, i), Address: fmt.Sprintf("127.0.0.1:%d", 10000+i)}); err != nil {
					break
				}
			}
		case "stats", "heap":
			if c.Synced {
				deadline := time.Now().Add(10 * time.Second)
				for synced(srv) < srv.Stats().Streams && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond) // polls a process of its own; bounded above
				}
			}
			if c.Op == "heap" {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				out.HeapBytes, out.Goroutines = ms.HeapAlloc, runtime.NumGoroutine()
			}
			st := srv.Stats()
			out.CPUNanos = cpuNanos()
			out.BytesWritten = cl.bytes.Load()
			out.Responses, out.Streams, out.NACKs, out.Services = st.Responses, st.Streams, st.NACKs, st.Services
			out.Synced = synced(srv)
			out.Watches, out.WatchCalls = up.open.Load(), up.calls.Load()
		default:
			err = fmt.Errorf("unknown op %q", c.Op)
		}
		if err != nil {
			out.Err = err.Error()
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return sc.Err()
}

// synced counts the streams whose every resource type's last response
// was acknowledged.
func synced(srv *xds.Server) int {
	n := 0
	for _, c := range srv.Clients() {
		ok := true
		for _, t := range c.Types {
			if t.Sent == "" || t.Acked != t.Sent {
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	return n
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// countingDiscovery counts the upstream watches the xDS server opens.
type countingDiscovery struct {
	registry.Discovery
	open, calls atomic.Int64
}

func (d *countingDiscovery) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	w, err := d.Discovery.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	d.open.Add(1)
	d.calls.Add(1)
	return &countedWatcher{Watcher: w, d: d}, nil
}

type countedWatcher struct {
	registry.Watcher
	d    *countingDiscovery
	once sync.Once
}

func (w *countedWatcher) Close() error {
	w.once.Do(func() { w.d.open.Add(-1) })
	return w.Watcher.Close()
}

// countingListener counts the bytes written to the connections it
// accepts: what the server sends, gRPC and HTTP/2 framing included.
type countingListener struct {
	net.Listener
	bytes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.bytes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}
