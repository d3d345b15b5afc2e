//go:build tools

// Package tools pins grpcurl, the command-line gRPC client that Wayfinder's
// tests run against a real server.Server with reflection on. The Makefile
// builds it by import path from this module:
//
//	go build -o BIN github.com/fullstorydev/grpcurl/cmd/grpcurl
//
// The blank import of the main package, behind the tools build tag, keeps
// the requirement in go.mod through go mod tidy; nothing compiles it as a
// library. The module is separate so that grpcurl's dependencies never
// enter Wayfinder's go.mod.
package tools

import _ "github.com/fullstorydev/grpcurl/cmd/grpcurl"
