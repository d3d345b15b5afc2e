package registrytest

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestProxyFreeze: a frozen proxy accepts connections and answers
// nothing, on connections open before and made during the freeze; Thaw
// delivers what was held.
func TestProxyFreeze(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p := NewProxy(t, echo.Addr().String())
	before := dial(t, p.Addr())
	roundTrip(t, before, "a")

	p.Freeze()
	during := dial(t, p.Addr()) // accepted while frozen
	for _, c := range []net.Conn{before, during} {
		if _, err := c.Write([]byte("b")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("Read through a frozen proxy = %d, %v; want nothing", n, err)
		}
	}
	p.Thaw()
	for _, c := range []net.Conn{before, during} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "b" {
			t.Fatalf("Read after Thaw = %q, %v; want the held %q", buf, err, "b")
		}
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(s))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != s {
		t.Fatalf("round trip = %q, %v; want %q", buf, err, s)
	}
}
