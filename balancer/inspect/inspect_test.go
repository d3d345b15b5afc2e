package inspect_test

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTargetCanonical: a balancer shows its ClientConn's target as the
// debug page shows the ClientConn, canonical: a target dialled without a
// scheme reads with the one gRPC added (dns:///127.0.0.1:port).
func TestTargetCanonical(t *testing.T) {
	b := lbtest.StartBackends(t, 1)[0]
	cc, err := grpc.NewClient(b.Addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, wrr.Name)))
	if err != nil {
		t.Fatalf("grpc.NewClient(%q) = %v", b.Addr, err)
	}
	defer cc.Close()
	cc.Connect()
	var got []inspect.Balancer
	wait.For(t, 10*time.Second, "the balancer registered with inspect", func() bool {
		got = inspect.Balancers()
		return len(got) == 1
	})
	if want := cc.CanonicalTarget(); got[0].Target != want || want != "dns:///"+b.Addr {
		t.Fatalf("inspect.Balancers()[0].Target = %q, want %q (CanonicalTarget), which is dns:///%s", got[0].Target, want, b.Addr)
	}
}
