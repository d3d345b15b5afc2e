package resolver_test

import (
	"net/url"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }

func dialB(b *testing.B, builder gresolver.Builder) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	cc, err := grpc.NewClient("wayfinder:///hello", grpc.WithResolvers(builder),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(roundRobin))
	if err != nil {
		b.Fatal(err)
	}
	return cc, hellopb.NewHelloServiceClient(cc)
}
