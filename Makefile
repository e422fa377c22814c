# exitd — build, test, demo, benchmarks.
#   make demo    a real WireGuard member reaches an internet host through exitd (lab, root)
#   make test    every test, root tests included (a skipped root test fails)

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -buildid= -X main.version=$(VERSION)
BIN      := bin
export CGO_ENABLED ?= 0

.PHONY: all build test test-short demo bench bench-go bench-fairness bench-members lint fmt clean deps fuzz

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/exitd ./cmd/exitd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/exitctl ./cmd/exitctl
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/exitlab ./cmd/exitlab

# Installs what the lab needs on Debian (no-op when present).
deps:
	@command -v wireguard-go >/dev/null && command -v wg >/dev/null && command -v nft >/dev/null && \
	 command -v iperf3 >/dev/null && command -v curl >/dev/null && command -v ping >/dev/null && command -v tc >/dev/null && \
	 command -v dig >/dev/null && command -v etcd >/dev/null || \
	 (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	   wireguard-go wireguard-tools nftables iproute2 iperf3 curl iputils-ping ethtool dnsutils etcd-server >/dev/null)

# The packages that reconfigure during traffic run a second time under the
# race detector.
RACE_PKGS := ./node/ ./dataplane/ ./sched/ ./control/ ./socks/ ./dns/

# The lab tests (internal/e2e) measure rates during member churn and floods:
# they run after the other packages, alone on the machine's CPUs.
test: build
	EXITD_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 60m $$($(GO) list ./... | grep -v '/internal/e2e$$')
	EXITD_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 30m ./internal/e2e/
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	$(MAKE) fuzz

# Every fuzz target (parsers of packets, DNS and SOCKS messages, config,
# keys, API bodies, wg-quick files) runs for FUZZTIME beyond its corpus.
FUZZTIME ?= 4s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "fuzz ./$$(dirname $$f) $$fn ($(FUZZTIME))"; \
	    for try in 1 2 3; do \
	      if $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f) >/tmp/exitd-fuzz.log 2>&1; then break; fi; \
	      if grep -q 'Failing input written' /tmp/exitd-fuzz.log || ! grep -q 'context deadline exceeded' /tmp/exitd-fuzz.log || [ $$try = 3 ]; then \
	        cat /tmp/exitd-fuzz.log; exit 1; \
	      fi; \
	      echo "  the fuzzing engine timed out on a loaded machine (no failing input); again"; \
	    done; \
	  done; \
	done

test-short:
	$(GO) test -short ./...

demo: deps build
	$(BIN)/exitlab demo

bench: deps build
	$(BIN)/exitlab bench --out bench-results

bench-fairness: deps build
	$(BIN)/exitlab fairness --out bench-results

bench-members: deps build
	$(BIN)/exitlab members-bench --handshaken 20000 --upstream-baseline --out bench-results

# SOCKS5: exitd's proxy vs Debian's Dante 1.4.2 (installed when missing).
.PHONY: bench-socks
bench-socks: deps build
	@command -v danted >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dante-server >/dev/null)
	$(BIN)/exitlab socks-bench --out bench-results

# DNS: exitd's resolver vs Debian's unbound 1.17 with dnsperf 2.10 (installed when missing).
.PHONY: bench-dns
bench-dns: deps build
	@command -v unbound >/dev/null && command -v dnsperf >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unbound dnsperf >/dev/null)
	$(BIN)/exitlab dns-bench --out bench-results

# Handshake flood (20k/50k/100k initiations/s) against a member's download.
.PHONY: bench-flood
bench-flood: deps build
	$(BIN)/exitlab flood-bench --out bench-results

# Conntrack fair state: one member fills the table while nine connect,
# quotas on vs off; the CPU of the quota rules (docs/performance.md).
.PHONY: bench-conn
bench-conn: deps build
	$(BIN)/exitlab conn-bench --out bench-results

# Cluster (issue 15): 3 nodes on a 3-member etcd (Debian's, installed when
# missing): 20,000 members added through one node until live on all three,
# single-change sync p50/p99, RSS, etcd's DB size.
.PHONY: bench-cluster
bench-cluster: deps build
	@command -v etcd >/dev/null || test -x /usr/bin/etcd || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null)
	$(BIN)/exitlab cluster-bench --out bench-results

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./sched/ ./members/

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w .

clean:
	rm -rf $(BIN) dist bench-results

-include packaging/packaging.mk
