//go:build tools

// Package tools pins staticcheck, the linter that make vet (and so make
// test) runs on every module of the repository. The Makefile builds it by
// import path from this module:
//
//	go build -o BIN honnef.co/go/tools/cmd/staticcheck
//
// The blank import of the main package, behind the tools build tag, keeps
// the requirement in go.mod through go mod tidy; nothing compiles it as a
// library. The module is separate so that staticcheck's dependencies never
// enter Wayfinder's go.mod.
package tools

import _ "honnef.co/go/tools/cmd/staticcheck"
