// Package hellopb moved to github.com/wayfinder-rpc/wayfinder/hello/hellopb.
//
// Deprecated: import github.com/wayfinder-rpc/wayfinder/hello/hellopb. These
// aliases keep balancer/ compiling until its imports are rewritten; delete
// this package then.
package hellopb

import (
	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

type (
	HelloRequest                    = hellopb.HelloRequest
	HelloResponse                   = hellopb.HelloResponse
	HelloServiceClient              = hellopb.HelloServiceClient
	HelloServiceServer              = hellopb.HelloServiceServer
	UnimplementedHelloServiceServer = hellopb.UnimplementedHelloServiceServer
)

// NewHelloServiceClient is hellopb.NewHelloServiceClient.
func NewHelloServiceClient(cc grpc.ClientConnInterface) HelloServiceClient {
	return hellopb.NewHelloServiceClient(cc)
}

// RegisterHelloServiceServer is hellopb.RegisterHelloServiceServer.
func RegisterHelloServiceServer(s grpc.ServiceRegistrar, srv HelloServiceServer) {
	hellopb.RegisterHelloServiceServer(s, srv)
}
