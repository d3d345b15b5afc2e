package kbench

import (
	"context"
	"net"
	"strings"
	"testing"
)

// TestAddrMap: loopback addresses map to distinct 10.244.x.y addresses
// with their port, others are kept, and the dialer reaches the loopback
// server behind a mapped address and refuses every other address.
func TestAddrMap(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() { // owned: ends when lis closes
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	m := &addrMap{fake: map[string]string{}, real: map[string]string{}}
	f, err := m.toFake(lis.Addr().String())
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	if err != nil || !strings.HasPrefix(f, "10.244.") || !strings.HasSuffix(f, ":"+port) {
		t.Fatalf("toFake(%s) = %q, %v; want 10.244.x.y:%s", lis.Addr(), f, err, port)
	}
	if again, _ := m.toFake(lis.Addr().String()); again != f {
		t.Errorf("toFake(%s) again = %q, want %q", lis.Addr(), again, f)
	}
	if other, _ := m.toFake("127.0.0.2:50051"); other == f {
		t.Errorf("toFake(127.0.0.2:50051) = %q, the same as %s's", other, lis.Addr())
	}
	if got, _ := m.toFake("10.1.2.3:80"); got != "10.1.2.3:80" {
		t.Errorf("toFake(10.1.2.3:80) = %q, want it kept", got)
	}
	c, err := m.dial(context.Background(), f)
	if err != nil {
		t.Fatalf("dial(%s) = %v", f, err)
	}
	c.Close()
	for _, a := range []string{"10.244.200.200:1", lis.Addr().String(), "10.1.2.3:80"} {
		if c, err := m.dial(context.Background(), a); err == nil {
			c.Close()
			t.Errorf("dial(%s) = nil error, want a refusal", a)
		}
	}
}
