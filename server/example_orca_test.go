package server_test

import (
	"context"
	"fmt"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/orca"
	"google.golang.org/protobuf/proto"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// weighedHello is a handler that reports what its call cost.
type weighedHello struct {
	hellopb.UnimplementedHelloServiceServer
}

func (weighedHello) SayHello(ctx context.Context, _ *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	// Not nil on a server built WithLoadReports.
	if rec := orca.CallMetricsRecorderFromContext(ctx); rec != nil {
		rec.SetNamedMetric("rows_scanned", 120)
	}
	return &hellopb.HelloResponse{}, nil
}

// With WithLoadReports every call's trailer carries an ORCA load report:
// the server-wide metrics set on LoadReports(), the handler's own for
// that call, the calls in flight and the process's CPU utilisation. A
// load-aware policy (grpc-go's weighted_round_robin) reads it from
// balancer.DoneInfo.ServerLoad; here the client decodes the trailer.
func ExampleWithLoadReports() {
	reg := memory.New()
	defer reg.Close()
	s, err := server.New(reg, "hello", server.WithLoadReports())
	if err != nil {
		fmt.Println(err)
		return
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), weighedHello{})
	s.LoadReports().SetApplicationUtilization(0.4) // say, the share of a worker pool in use
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Stop(ctx)

	cc, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	var trailer metadata.MD
	if _, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{}, grpc.Trailer(&trailer)); err != nil {
		fmt.Println(err)
		return
	}
	var report v3orcapb.OrcaLoadReport
	for _, b := range trailer.Get("endpoint-load-metrics-bin") {
		if err := proto.Unmarshal([]byte(b), &report); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("application utilization:", report.GetApplicationUtilization())
	fmt.Println("rows_scanned:", report.GetNamedMetrics()["rows_scanned"])
	fmt.Println("in flight besides this call:", report.GetNamedMetrics()[server.InFlightMetric])
	fmt.Println("cpu measured:", report.GetCpuUtilization() > 0)
	// Output:
	// application utilization: 0.4
	// rows_scanned: 120
	// in flight besides this call: 0
	// cpu measured: true
}
