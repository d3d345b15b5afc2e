//go:build tools

// Package tools pins grpc-health-probe, the gRPC ecosystem's health
// checker, which Wayfinder's tests run against a real server.Server. Its
// main package is the module root and cannot be imported, so the Makefile
// builds it by import path from this module:
//
//	go build -o BIN github.com/grpc-ecosystem/grpc-health-probe
//
// The blank import, behind the tools build tag, keeps the requirement in
// go.mod through go mod tidy. The module is separate so that the probe's
// dependencies never enter Wayfinder's go.mod.
package tools

import _ "github.com/grpc-ecosystem/grpc-health-probe"
