# Packaging targets, included by the top-level Makefile.
#   make rpm deb        dist/exitd-*.rpm and dist/exitd_*.deb from packaging/nfpm.yaml
#   make packages       both
#   make test-packaging package inspection, rpmlint, reproducibility, the unit
#                       under a real systemd (systemd-nspawn; root)
# Signing: EXITD_SIGNING_KEY=/path/key.asc NFPM_PASSPHRASE=... make rpm deb

# nfpm is installed once per version outside the module (it stays out of
# go.mod) and reused: `go run pkg@version` asks the proxy every time.
NFPM_VERSION := v2.45.2
NFPM_BIN  ?= $(shell $(GO) env GOPATH)/bin/nfpm-$(NFPM_VERSION)/nfpm
NFPM      ?= $(NFPM_BIN)
DIST      ?= dist
PKGBIN    ?= $(DIST)/bin
RELEASE   ?= 1
GOARCH    ?= $(shell $(GO) env GOARCH)
# Packages want a version starting with a digit and without '-'.
PKG_VERSION ?= $(shell v='$(VERSION)'; case "$$v" in (v[0-9]*) v=$$(echo "$$v" | cut -c2-);; (*) v="0.0.0~git$$v";; esac; echo "$$v" | tr -- '-' '+')
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
PKG_LDFLAGS := -s -w -buildid= -X main.version=$(VERSION)

export SOURCE_DATE_EPOCH

.PHONY: rpm deb packages pkgbin test-packaging

# Offline fallback: build it from the module cache (nfpm's own go.mod).
$(NFPM_BIN):
	@mkdir -p $(dir $(NFPM_BIN))
	GOBIN=$(dir $(NFPM_BIN)) GOFLAGS= $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) || \
	  (cd "$$($(GO) env GOMODCACHE)/github.com/goreleaser/nfpm/v2@$(NFPM_VERSION)" && \
	   GOPROXY=off GOFLAGS=-mod=mod $(GO) build -trimpath -o $(NFPM_BIN) ./cmd/nfpm)

pkgbin:
	@mkdir -p $(PKGBIN)
	CGO_ENABLED=0 $(GO) build -trimpath -buildmode=pie -ldflags '$(PKG_LDFLAGS)' -o $(PKGBIN)/exitd ./cmd/exitd
	CGO_ENABLED=0 $(GO) build -trimpath -buildmode=pie -ldflags '$(PKG_LDFLAGS)' -o $(PKGBIN)/exitctl ./cmd/exitctl
	@touch -d @$(SOURCE_DATE_EPOCH) $(PKGBIN)/exitd $(PKGBIN)/exitctl

define nfpm_pkg
	VERSION='$(PKG_VERSION)' RELEASE='$(RELEASE)' GOARCH='$(GOARCH)' PKGBIN='$(PKGBIN)' \
	EXITD_SIGNING_KEY='$(EXITD_SIGNING_KEY)' \
	$(NFPM) package --config packaging/nfpm.yaml --packager $(1) --target $(DIST)/
endef

rpm: pkgbin $(NFPM_BIN)
	$(call nfpm_pkg,rpm)

deb: pkgbin $(NFPM_BIN)
	$(call nfpm_pkg,deb)

packages: rpm deb

# The Go tests build their own packages (twice, for reproducibility) when
# EXITD_DIST is unset; `make test` runs them too.
test-packaging:
	EXITD_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 30m -v ./packaging/ ./internal/nspawn/
