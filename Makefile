# sparsecast build, test and benchmark entry points. README names two of
# them: `make demo` (the main job) and `make test` (every test).
GO       ?= go
BIN      := bin/sparsecast
FUZZTIME ?= 15s

.PHONY: man build build-dpdk test test-unit test-fuzz fuzz-long test-lab test-trex test-dissector test-sriov test-deploy test-dpdk vet fmt-check demo bench bench-dpdk bench-veth bench-sweep bench-cluster bench-sweep-dpdk install clean trex-lab

# What `sparsecast version` reports when the toolchain stamps no VCS info
# (GOFLAGS=-buildvcs=false, a tree without git): the commit, git describe,
# uncommitted changes, and the build time (SOURCE_DATE_EPOCH when set).
GIT_COMMIT   := $(shell git rev-parse HEAD 2>/dev/null)
GIT_DESCRIBE := $(shell git describe --tags --always --dirty 2>/dev/null)
GIT_MODIFIED := $(shell test -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" && echo true || echo false)
BUILD_TIME   := $(shell date -u -d "@$${SOURCE_DATE_EPOCH:-$$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
VERSION_LDFLAGS := -X main.buildCommit=$(GIT_COMMIT) -X main.buildVersion=$(GIT_DESCRIBE) \
	-X main.buildModified=$(GIT_MODIFIED) -X main.buildTime=$(BUILD_TIME)

build:
	$(GO) build -ldflags '$(VERSION_LDFLAGS)' -o $(BIN) ./cmd/sparsecast

# The same binary with the DPDK backend (needs libdpdk-dev).
build-dpdk:
	$(GO) build -tags dpdk -ldflags '$(VERSION_LDFLAGS)' -o $(BIN) ./cmd/sparsecast

# A man page per command, from the cobra tree (`sparsecast man`), in man/.
man: build
	rm -rf man.tmp && $(BIN) man --dir man.tmp && rm -rf man && mv man.tmp man

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
	./dataplane:FuzzSwitch \
	./dataplane/endpoint:FuzzParseParity \
	./control:FuzzDecodeMembers \
	./control:FuzzEtcdDecode \
	./headers:FuzzRingRecord \
	./dataplane:FuzzConfig \
	./dataplane:FuzzFlowRoutes \
	./dataplane:FuzzRoutesFile \
	./control:FuzzTopology \
	./control:FuzzAPI \
	./dataplane/endpoint:FuzzManifest \
	./dataplane/endpoint:FuzzSenderFeedback

test-fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s $$pkg; \
	done

# Each fuzzer for FUZZEXECS executions (10 M by default: hours on two cores),
# then the inputs it found interesting are copied from Go's cache into the
# package's testdata/fuzz/<Fuzzer>/ corpus, which test-fuzz replays; commit
# them. `make fuzz-long FUZZ_TARGETS=./control:FuzzAPI` runs one.
FUZZEXECS ?= 10000000
fuzz-long:
	@set -e; cache=$$($(GO) env GOCACHE)/fuzz; mod=$$($(GO) list -m); \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZEXECS) executions"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZEXECS)x -fuzzminimizetime=30s $$pkg; \
		src=$$cache/$$mod/$${pkg#./}/$$fn; dst=$$pkg/testdata/fuzz/$$fn; \
		if [ -d $$src ]; then mkdir -p $$dst; cp -n $$src/* $$dst/ 2>/dev/null || true; \
			echo "corpus: $$(ls $$dst | wc -l) inputs in $$dst"; fi; \
	done

# Lab tests build real namespaces and veth pairs: root only.
test-lab:
	@if [ "$$(id -u)" != 0 ]; then echo "test-lab needs root (network namespaces)"; exit 1; fi
	$(GO) test -count=1 -p 1 -tags lab -timeout 30m ./testbeds/...
	$(GO) test -count=1 -tags lab -run TestBenchFeedbackVeth -timeout 10m ./perf/

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

# The DPDK backend's tests on virtual devices: net_ring, net_null, and
# net_af_packet on veth pairs (root; skipped otherwise). Installs
# libdpdk-dev and dpdk when missing (root). As root, 256 hugepages of 2 MiB
# are reserved for the run and given back after it, pass or fail
# (testbeds/dpdk/with-hugepages.sh); without them EAL runs with --no-huge.
DPDK_PKGS := ./ffi ./dataplane/dpdkport ./dataplane/metrics ./perf
test-dpdk:
	@if ! pkg-config --exists libdpdk 2>/dev/null || ! command -v dpdk-testpmd >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then echo "test-dpdk needs libdpdk-dev and dpdk: apt-get install libdpdk-dev dpdk pkg-config (root)"; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y pkg-config libdpdk-dev dpdk || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y pkg-config libdpdk-dev dpdk; }; \
	fi
	$(GO) vet -tags dpdk $(DPDK_PKGS) ./cmd/sparsecast
	sh testbeds/dpdk/with-hugepages.sh -n 256 $(GO) test -count=1 -p 1 -tags dpdk $(DPDK_PKGS)

# The main job (root): the leaf-spine lab fabric, its scenarios, and down.
demo: build
	bash testbeds/demo.sh

# The binary, the systemd units and the man pages under DESTDIR/PREFIX
# (`make install DESTDIR=/tmp/stage PREFIX=/usr` for a package).
PREFIX ?= /usr/local
install: build man
	DESTDIR='$(DESTDIR)' MANPAGES=man bash testbeds/deploy/install.sh $(PREFIX)

bench: build
	$(GO) test -run='^$$' -bench=. -benchmem ./headers ./dataplane
	$(BIN) bench replicate --fanout 1 --json
	$(BIN) bench replicate --fanout 9 --json
	$(BIN) bench replicate --fanout 64 --json

# The DPDK switch against dpdk-testpmd (io and mac modes) on net_null
# devices, fan-out 1 and 9, on 2 MiB hugepages reserved for the run (root;
# without them, on 4 KiB pages), about 1 minute: JSON in
# perf/results/dpdk.json.
bench-dpdk: build-dpdk
	mkdir -p perf/results
	sh testbeds/dpdk/with-hugepages.sh -n 512 sh -c '$(BIN) bench dpdk --vdev net_null --fanout 1 --size 64 --vs-testpmd --json && \
		$(BIN) bench dpdk --vdev net_null --fanout 9 --size 128 --vs-testpmd --json' > perf/results/dpdk.json.tmp || { rm -f perf/results/dpdk.json.tmp; exit 1; }
	mv perf/results/dpdk.json.tmp perf/results/dpdk.json
	@cat perf/results/dpdk.json

# Replication over fan-outs 1-64 and frames of 64-4096 bytes (about 30 s):
# CSV, plot and table in perf/results/, the table also into README's
# performance section.
bench-sweep: build
	$(BIN) bench sweep --csv perf/results/sweep.csv --png perf/results/sweep.png \
		--md perf/results/sweep.md --readme README.md

# The same grid on the DPDK backend (net_null devices, fan-outs up to 16:
# this DPDK build allows 32 ports), on 2 MiB hugepages reserved for the run
# (root; without them, on 4 KiB pages), about 20 s: perf/results/sweep-dpdk.*.
bench-sweep-dpdk: build-dpdk
	sh testbeds/dpdk/with-hugepages.sh -n 512 $(BIN) bench sweep --backend dpdk --csv perf/results/sweep-dpdk.csv \
		--png perf/results/sweep-dpdk.png --md perf/results/sweep-dpdk.md

# The switch against tc (u32 + mirred) and kernel multicast routing
# (smcroute, installed with apt-get when missing) on one veth topology, 8
# outputs, in one run (root, about 30 s): JSON in perf/results/veth.json.
bench-veth: build
	@if [ "$$(id -u)" != 0 ]; then echo "bench-veth needs root (network namespaces)"; exit 1; fi
	mkdir -p perf/results
	$(BIN) bench veth --outputs 8 --json > perf/results/veth.json.tmp || { rm -f perf/results/veth.json.tmp; exit 1; }
	mv perf/results/veth.json.tmp perf/results/veth.json
	@cat perf/results/veth.json

clean:
	rm -rf bin

# The TRex lab (testbeds/trex/README.md): a real TRex server against the
# switch in namespaces, README's console line, an API run, the NDR search
# and the feedback benchmark, then everything torn down (root, TREX=DIR: a
# TRex directory; testbeds/trex/README.md says how to build one). Not part of `make test`.
TREX_LAB_PREFIX ?= sctrex-
trex-lab: build
	@if [ "$$(id -u)" != 0 ]; then echo "trex-lab: skipped: needs root (network namespaces, TRex's DPDK)"; exit 0; fi; \
	if [ -z "$(TREX)" ]; then echo "trex-lab: skipped: no TRex directory: make trex-lab TREX=/path/to/trex (t-rex-64 in it or its scripts/)"; exit 0; fi; \
	$(BIN) testbed trex --trex-dir "$(TREX)" --prefix $(TREX_LAB_PREFIX)

# Control at cluster scale: README's table for fat-trees of 1,024, 8,192 and
# 65,536 hosts (route computation, tables, full resync through a ring, link
# failures). The full resync goes through 256 switches per role and is
# extrapolated to the rest (marked * in the table).
bench-cluster: build
	$(BIN) bench topology --fattree 1024,8192,65536 --resync-switches 256 --markdown
