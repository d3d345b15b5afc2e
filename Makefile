# Wayfinder's two commands:
#   make demo   runs the HelloService demo on the embedded registry
#   make test   builds the test servers it needs (cached) and runs every test
SHELL := bash
GO ?= go
CACHE_DIR ?= $(HOME)/.cache/wayfinder

# Test servers are built from source through their own tools modules, once,
# and cached under $(CACHE_DIR), keyed by version and by a hash of the
# tools module, so a fresh clone reuses a warm cache and a changed tools
# module rebuilds.
CONSUL_VERSION := 1.22.5
ETCD_VERSION := 3.7.3
KUBE_APISERVER_VERSION := 1.37.2
GRPC_HEALTH_PROBE_VERSION := 0.4.63
GRPCURL_VERSION := 1.9.4
# npm packages of the Node xDS client the xds module's tests run.
NODE_XDS_VERSION := 1.14.1
NODE_GRPC_JS_VERSION := 1.14.7
NODE_PROTO_LOADER_VERSION := 0.8.1
NODE_XDS_DIR := $(CACHE_DIR)/node-xds-$(NODE_XDS_VERSION)
export WAYFINDER_NODE_XDS_DIR := $(NODE_XDS_DIR)
CONSUL_KEY := $(shell cat internal/tools/consul/go.mod internal/tools/consul/go.sum internal/tools/consul/main.go | sha256sum | cut -c1-12)
ETCD_KEY := $(shell cat internal/tools/etcd/go.mod internal/tools/etcd/go.sum internal/tools/etcd/main.go | sha256sum | cut -c1-12)
KUBE_APISERVER_KEY := $(shell cat internal/tools/kube-apiserver/go.mod internal/tools/kube-apiserver/go.sum internal/tools/kube-apiserver/main.go | sha256sum | cut -c1-12)
CONSUL_BIN := $(CACHE_DIR)/consul-$(CONSUL_VERSION)-$(CONSUL_KEY)/consul
ETCD_BIN := $(CACHE_DIR)/etcd-$(ETCD_VERSION)-$(ETCD_KEY)/etcd
GRPC_HEALTH_PROBE_KEY := $(shell cat internal/tools/grpc-health-probe/go.mod internal/tools/grpc-health-probe/go.sum internal/tools/grpc-health-probe/tools.go | sha256sum | cut -c1-12)
GRPCURL_KEY := $(shell cat internal/tools/grpcurl/go.mod internal/tools/grpcurl/go.sum internal/tools/grpcurl/tools.go | sha256sum | cut -c1-12)
KUBE_APISERVER_BIN := $(CACHE_DIR)/kube-apiserver-$(KUBE_APISERVER_VERSION)-$(KUBE_APISERVER_KEY)/kube-apiserver
GRPC_HEALTH_PROBE_BIN := $(CACHE_DIR)/grpc-health-probe-$(GRPC_HEALTH_PROBE_VERSION)-$(GRPC_HEALTH_PROBE_KEY)/grpc-health-probe
GRPCURL_BIN := $(CACHE_DIR)/grpcurl-$(GRPCURL_VERSION)-$(GRPCURL_KEY)/grpcurl
# The linter make vet runs, built the same way.
STATICCHECK_VERSION := 0.8.2
STATICCHECK_KEY := $(shell cat internal/tools/staticcheck/go.mod internal/tools/staticcheck/go.sum internal/tools/staticcheck/tools.go | sha256sum | cut -c1-12)
STATICCHECK_BIN := $(CACHE_DIR)/staticcheck-$(STATICCHECK_VERSION)-$(STATICCHECK_KEY)/staticcheck
export WAYFINDER_CONSUL_BIN := $(CONSUL_BIN)
export WAYFINDER_ETCD_BIN := $(ETCD_BIN)
export WAYFINDER_KUBE_APISERVER_BIN := $(KUBE_APISERVER_BIN)
export WAYFINDER_GRPC_HEALTH_PROBE_BIN := $(GRPC_HEALTH_PROBE_BIN)
export WAYFINDER_GRPCURL_BIN := $(GRPCURL_BIN)

TEST_FLAGS ?= -race -count=1 -timeout 40m
DEMO_FLAGS ?=

.PHONY: demo test vet vet-bench staticcheck servers consul etcd kube-apiserver grpc-health-probe grpcurl zookeeper browser xds-clients generate fmt bench bench-kubernetes bench-xds faults

demo:
	$(GO) run ./examples/helloworld/demo $(DEMO_FLAGS)

# Backends with heavy dependencies are Go modules of their own, so that
# users who do not import them never build or download those
# dependencies (the Kubernetes backend, the xDS server); ./... stops at
# their go.mod, so they are tested here, with the Kubernetes backend's
# benchmark module (whose test checks how the harness maps loopback
# addresses for the API server).
NESTED_MODULES := registry/kubernetes xds benchmark/kubernetes

test: servers browser xds-clients vet
	$(GO) test $(TEST_FLAGS) ./...
	@for m in $(NESTED_MODULES); do echo "cd $$m && $(GO) test $(TEST_FLAGS) ./..."; (cd $$m && $(GO) test $(TEST_FLAGS) ./...) || exit 1; done

# The benchmark harness: real Consul, etcd and gRPC servers on loopback;
# writes docs/benchmarks.md and docs/benchmarks/ (JSON and SVG charts).
# Every harness lives under benchmark/: the command benchmark/cmd/wfbench,
# the harness and the picker benchmarks under benchmark/internal/. The
# picker and slow_backend scenarios also run the separate module
# benchmark/xds (grpc's weighted_round_robin and
# outlier_detection_experimental), whose first build takes minutes.
# About 20 minutes before the comparisons with grpc-go's built-ins were
# added, longer now; shorten it with BENCH_FLAGS, e.g.
#   make bench BENCH_FLAGS="-runs 1 -outage 5s -tail 5s -idle-window 5s"
# The Kubernetes backend is measured by its own command, in the module
# benchmark/kubernetes (wfbench must not import client-go): make
# bench-kubernetes runs propagation, idle_load and scale on a real
# kube-apiserver over etcd and merges the results into the same report
# (-merge), keeping the other backends'; it takes BENCH_FLAGS too. About
# 10 minutes.
BENCH_FLAGS ?=
bench: servers vet-bench
	$(GO) run ./benchmark/cmd/wfbench $(BENCH_FLAGS)

bench-kubernetes: etcd kube-apiserver
	cd benchmark/kubernetes && $(GO) run ./cmd/wfbench-k8s -merge -out ../../docs/benchmarks -md ../../docs/benchmarks.md $(BENCH_FLAGS)

# The xDS server: wfbench's xds scenario alone (benchmark/xds's
# cmd/xdsbench: a registry change to grpc-go's xDS picks beside
# Wayfinder's resolver, 1,000 clients x 10 services, 5,000 endpoints
# with Delta against State of the World), merged into docs/benchmarks.md
# (section 12; make bench runs it too); then the propagation to
# grpc-go's, Python's and Node's xDS clients against the resolver
# (docs/xds.md, "Benchmarks"), which needs clients outside Go.
bench-xds: xds-clients
	$(GO) run ./benchmark/cmd/wfbench -scenarios xds -backends memory -merge $(BENCH_FLAGS)
	cd xds && $(GO) test -run '^$$' -bench Propagation -benchtime 100x .

# The fault suite, verbosely, with the long variants. Soak for a chosen
# time with FAULTS_SOAK, e.g. make faults FAULTS_SOAK=10m.
FAULTS_SOAK ?=
faults: servers
	WAYFINDER_FAULTS_LONG=1 WAYFINDER_FAULTS_SOAK=$(FAULTS_SOAK) $(GO) test -race -count=1 -v -timeout 2h ./internal/testing/faults

# gofmt, go vet and staticcheck (its default checks; staticcheck.conf
# would change them) on the root module and the nested modules. Silence
# a staticcheck finding only where it is wrong, with a reason:
#   //lint:ignore SA1019 why the deprecated call is still the right one
vet: staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK_BIN) ./...
	@for m in $(NESTED_MODULES); do echo "cd $$m && go vet ./... && staticcheck ./..."; (cd $$m && $(GO) vet ./... && $(STATICCHECK_BIN) ./...) || exit 1; done

# make vet covers benchmark/kubernetes (a nested module above); the
# benchmark/xds module is vetted before make bench, which builds it
# anyway, and not in make test: its first build (grpc/xds, about 500
# packages) takes minutes.
BENCH_MODULES := benchmark/xds
vet-bench: staticcheck
	@for m in $(BENCH_MODULES); do echo "cd $$m && go vet ./... && staticcheck ./..."; (cd $$m && $(GO) vet ./... && $(STATICCHECK_BIN) ./...) || exit 1; done

# The servers the tests start, and the third-party gRPC clients they run
# against Wayfinder's server (grpc-health-probe, grpcurl).
servers: consul etcd kube-apiserver grpc-health-probe grpcurl zookeeper

# ZooKeeper 3.8 for registry/zookeeper's tests, from Debian (its jars run
# on the machine's OpenJDK; testenv starts the JVM itself).
zookeeper:
	@test -f /usr/share/java/zookeeper.jar || { \
	  echo "installing Debian's zookeeper for the ZooKeeper backend's tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null; fi; }

# The debug page is tested in a real headless Chromium, from Debian.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the debug-page test"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }
# The xds module's tests run xDS clients of other languages: Python with
# Debian's grpcio (1.51, its xDS resolver compiled in) and grpc-tools
# (its protoc reads hello.proto at run time), and Node (Debian's Node 20)
# with @grpc/grpc-js-xds from npm, cached in $(NODE_XDS_DIR).
xds-clients: $(NODE_XDS_DIR)/node_modules/@grpc/grpc-js-xds/package.json
	@/usr/bin/python3 -c 'import grpc, grpc_tools.protoc' 2>/dev/null || { \
	  echo "installing Debian's python3-grpcio and python3-grpc-tools for the xDS client tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-grpcio python3-grpc-tools >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-grpcio python3-grpc-tools >/dev/null; fi; }
$(NODE_XDS_DIR)/node_modules/@grpc/grpc-js-xds/package.json:
	@echo "installing @grpc/grpc-js-xds $(NODE_XDS_VERSION) for the xDS client tests (cached afterwards in $(NODE_XDS_DIR))"
	@mkdir -p $(NODE_XDS_DIR)
	npm install --prefix $(NODE_XDS_DIR) --no-audit --no-fund --ignore-scripts --save-exact \
		@grpc/grpc-js-xds@$(NODE_XDS_VERSION) @grpc/grpc-js@$(NODE_GRPC_JS_VERSION) @grpc/proto-loader@$(NODE_PROTO_LOADER_VERSION)
consul: $(CONSUL_BIN)
etcd: $(ETCD_BIN)
kube-apiserver: $(KUBE_APISERVER_BIN)
grpc-health-probe: $(GRPC_HEALTH_PROBE_BIN)
grpcurl: $(GRPCURL_BIN)
staticcheck: $(STATICCHECK_BIN)

$(CONSUL_BIN):
	@echo "building Consul $(CONSUL_VERSION) for the tests (15-25 min cold, cached afterwards in $(CACHE_DIR))"
	@mkdir -p $(dir $@)
	cd internal/tools/consul && $(GO) build -buildvcs=false -trimpath -o $@.tmp . && mv $@.tmp $@

$(ETCD_BIN):
	@echo "building etcd $(ETCD_VERSION) for the tests (cached afterwards in $(CACHE_DIR))"
	@mkdir -p $(dir $@)
	cd internal/tools/etcd && $(GO) build -buildvcs=false -trimpath -o $@.tmp . && mv $@.tmp $@

$(KUBE_APISERVER_BIN):
	@echo "building kube-apiserver $(KUBE_APISERVER_VERSION) for the tests (about 11 min cold on 2 cores, cached afterwards in $(CACHE_DIR))"
	@mkdir -p $(dir $@)
	cd internal/tools/kube-apiserver && $(GO) build -buildvcs=false -trimpath -o $@.tmp . && mv $@.tmp $@

# The third-party clients' main packages cannot be imported, so their
# tools modules only pin them (tools.go) and are built by import path.
$(GRPC_HEALTH_PROBE_BIN):
	@echo "building grpc-health-probe $(GRPC_HEALTH_PROBE_VERSION) for the tests (cached afterwards in $(CACHE_DIR))"
	@mkdir -p $(dir $@)
	cd internal/tools/grpc-health-probe && $(GO) build -buildvcs=false -trimpath -o $@.tmp github.com/grpc-ecosystem/grpc-health-probe && mv $@.tmp $@

$(GRPCURL_BIN):
	@echo "building grpcurl $(GRPCURL_VERSION) for the tests (cached afterwards in $(CACHE_DIR))"
	@mkdir -p $(dir $@)
	cd internal/tools/grpcurl && $(GO) build -buildvcs=false -trimpath -ldflags "-X main.version=v$(GRPCURL_VERSION)" -o $@.tmp github.com/fullstorydev/grpcurl/cmd/grpcurl && mv $@.tmp $@

$(STATICCHECK_BIN):
	@echo "building staticcheck $(STATICCHECK_VERSION) for make vet (cached afterwards in $(CACHE_DIR))"
	@mkdir -p $(dir $@)
	cd internal/tools/staticcheck && $(GO) build -buildvcs=false -trimpath -o $@.tmp honnef.co/go/tools/cmd/staticcheck && mv $@.tmp $@

# Regenerates the HelloService code. protoc comes from Debian's
# protobuf-compiler; the plugins are installed at pinned versions.
generate:
	command -v protoc >/dev/null || (apt-get update && apt-get install -y protobuf-compiler)
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	cd hello/hellopb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative hello.proto
