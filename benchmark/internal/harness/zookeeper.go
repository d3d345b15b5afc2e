package harness

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper"
)

// NewZooKeeper starts a standalone ZooKeeper on loopback for the life of
// tb (its data on disk, so it survives Stop and Start). Requests are
// counted on the wire by a TCP proxy in front of it: one per request
// frame the client sends, by ZooKeeper opcode (pings included: they are
// what an idle session costs).
func NewZooKeeper(tb testing.TB) *Backend {
	tb.Helper()
	z := testenv.StartZooKeeper(tb)
	return &Backend{
		Name:    "zookeeper",
		Version: "ZooKeeper " + z.Version(),
		open: func(tb testing.TB, c *Counter) (registry.Registry, error) {
			addr := z.Addr()
			if c != nil {
				addr = zkCountingProxy(tb, addr, c)
			}
			return zookeeper.New([]string{addr})
		},
		stop:  func(tb testing.TB) { z.Kill(tb) },
		start: func(tb testing.TB) { z.Restart(tb) },
	}
}

// zkOps names the opcodes a registry client sends.
var zkOps = map[int32]string{
	0: "connect", 1: "create", 2: "delete", 3: "exists", 4: "getData",
	5: "setData", 8: "getChildren", 11: "ping", 12: "getChildren2",
	14: "multi", 15: "create2", 100: "setAuth", 101: "setWatches",
	-11: "closeSession",
}

// zkCountingProxy forwards loopback connections to target and counts
// each length-prefixed frame the client sends, by opcode. It returns its
// address; it closes with tb.
func zkCountingProxy(tb testing.TB, target string, c *Counter) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("bench: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(cs ...net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false // closed
		}
		conns = append(conns, cs...)
		return true
	}
	conns = []net.Conn{}
	wg.Add(1)
	go func() { // owned: ends when lis closes at cleanup
		defer wg.Done()
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			if !track(in, out) {
				in.Close()
				out.Close()
				return
			}
			wg.Add(2)
			go func() { // owned: ends when either side closes
				defer wg.Done()
				zkCountFrames(in, out, c)
				out.Close()
			}()
			go func() { // owned: ends when either side closes
				defer wg.Done()
				io.Copy(in, out)
				in.Close()
			}()
		}
	}()
	tb.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, cn := range conns {
			cn.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

// zkCountFrames copies client frames from in to out, counting each: the
// first is the session's connect request, each later one starts with
// xid and opcode.
func zkCountFrames(in io.Reader, out io.Writer, c *Counter) {
	var hdr [4]byte
	first := true
	buf := make([]byte, 0, 4096)
	for {
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > 1<<24 {
			return // not ZooKeeper's framing
		}
		buf = append(buf[:0], hdr[:]...)
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(in, buf[4:]); err != nil {
			return
		}
		kind := "connect"
		if !first && n >= 8 {
			op := int32(binary.BigEndian.Uint32(buf[8:12]))
			if kind = zkOps[op]; kind == "" {
				kind = "other"
			}
		}
		first = false
		c.add(kind)
		if _, err := out.Write(buf); err != nil {
			return
		}
	}
}
