# sparsecast build, test and benchmark entry points. README names two of
# them: `make demo` (the main job) and `make test` (every test).
GO       ?= go
BIN      := bin/sparsecast
FUZZTIME ?= 15s

.PHONY: build build-dpdk test test-unit test-fuzz test-lab test-trex test-dissector test-sriov test-deploy test-dpdk vet fmt-check demo bench install clean

build:
	$(GO) build -o $(BIN) ./cmd/sparsecast

# The same binary with the DPDK backend (needs libdpdk-dev).
build-dpdk:
	$(GO) build -tags dpdk -o $(BIN) ./cmd/sparsecast

# Every test: formatting, vet, unit tests (race detector on the packages with
# concurrency), each fuzzer for a bounded time over its kept corpus, and the
# veth/netns lab tests (root).
test: fmt-check vet test-unit test-fuzz test-lab test-trex test-dissector test-sriov test-deploy test-dpdk

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test-unit:
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./dataplane/ ./dataplane/metrics/

# Fuzzers: `go test -fuzz` takes one target per run.
FUZZ_TARGETS := \
	./headers:FuzzCodecs \
	./headers:FuzzRoundTrip \
	./dataplane:FuzzSwitch

test-fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s $$pkg; \
	done

# Lab tests build real namespaces and veth pairs: root only.
test-lab:
	@if [ "$$(id -u)" != 0 ]; then echo "test-lab needs root (network namespaces)"; exit 1; fi
	$(GO) test -count=1 -p 1 -tags lab -timeout 20m ./testbeds/...

# TRex profiles decoded by the Go codec and replayed into a lab switch,
# the Wireshark dissector under tshark, SR-IOV dry runs, deployment files.
# (They also run inside test-unit; these targets name them.)
test-trex:
	$(GO) test -count=1 -v ./testbeds/trex/
test-dissector:
	$(GO) test -count=1 -v ./testbeds/wireshark/
test-sriov:
	$(GO) test -count=1 ./testbeds/sriov/
test-deploy:
	$(GO) test -count=1 ./testbeds/deploy/

# The DPDK backend's tests on virtual devices (needs libdpdk-dev; no
# hugepages: the tests run EAL with --no-huge).
test-dpdk:
	$(GO) vet -tags dpdk ./ffi ./dataplane/dpdkport ./perf ./cmd/sparsecast
	$(GO) test -count=1 -tags dpdk ./ffi ./dataplane/dpdkport ./perf

# The main job (root): the leaf-spine lab fabric, its scenarios, and down.
demo: build
	bash testbeds/demo.sh

PREFIX ?= /usr/local
install: build
	bash testbeds/deploy/install.sh $(PREFIX)

bench: build
	$(GO) test -run='^$$' -bench=. -benchmem ./headers ./dataplane
	$(BIN) bench replicate --fanout 1 --json
	$(BIN) bench replicate --fanout 9 --json
	$(BIN) bench replicate --fanout 64 --json

clean:
	rm -rf bin
