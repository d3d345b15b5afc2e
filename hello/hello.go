// Package hello is the HelloService that Wayfinder's examples, the
// wayfinder CLI's demo and the tests share: the generated code is in
// hello/hellopb (from hello.proto; make generate rebuilds it), the server
// here, and the in-process fault demo in hello/faultdemo.
package hello

import (
	"context"
	"fmt"
	"math"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

// Server answers SayHello. Name identifies the server in the greeting, so
// a client can see which instance answered.
type Server struct {
	hellopb.UnimplementedHelloServiceServer
	Name string
}

// SayHello greets req.Name and returns num1 + num2. An overflowing sum is
// an InvalidArgument error rather than a silently wrapped number.
func (s *Server) SayHello(_ context.Context, req *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	sum := int64(req.GetNum1()) + int64(req.GetNum2())
	if sum > math.MaxInt32 || sum < math.MinInt32 {
		return nil, status.Errorf(codes.InvalidArgument, "num1 + num2 = %d overflows int32", sum)
	}
	return &hellopb.HelloResponse{
		Message: fmt.Sprintf("Hello %s, from %s", req.GetName(), s.Name),
		Result:  int32(sum),
	}, nil
}
