# selfheal: check_worker, handle_worker, worker_listener, demo_worker.
# `make help` lists the targets.

SHELL      := /bin/bash
MODULE     := github.com/selfheal/selfheal
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X $(MODULE)/internal/version.Version=$(VERSION)
BINARIES   := check_worker handle_worker worker_listener demo_worker check_selfheal
BIN        := $(CURDIR)/bin
GO         ?= go
# Go 1.27.3 or newer: older standard libraries have known vulnerabilities in
# crypto/tls, crypto/x509 and net/http that our code reaches. Where the
# machine's own Go is older, the go command fetches go1.27.3 through the
# module proxy (about 76 MB, once per machine); a newer local Go is used as is.
GO_MIN     := 1.27.3
ifeq ($(origin GOTOOLCHAIN),undefined)
GO_LOCAL   := $(shell GOTOOLCHAIN=local $(GO) env GOVERSION 2>/dev/null | sed 's/^go//')
GO_NEWEST  := $(shell printf '%s\n' $(GO_MIN) $(GO_LOCAL) | sort -V | tail -n1)
export GOTOOLCHAIN := $(if $(filter $(GO_LOCAL),$(GO_NEWEST)),local,go$(GO_MIN))
endif
FUZZTIME   ?= 8s
PREFIX     ?= /usr/local
PLUGINDIR  ?= /usr/lib/nagios/plugins
MANDIR     ?= $(PREFIX)/share/man
BUILD      := $(CURDIR)/build
# Debian packages: the version from git (packaging/version.sh), for amd64
# and the host's architecture.
DEB_VERSION ?= $(shell sh packaging/version.sh)
DEB_HOST   := $(shell dpkg --print-architecture 2>/dev/null)
DEB_ARCHES ?= $(sort amd64 $(DEB_HOST))
DIST       ?= $(CURDIR)/dist

# Fuzz targets run briefly by `make test`: package:FuzzName.
FUZZ_TARGETS := \
	./internal/thresholds:FuzzParse \
	./internal/status:FuzzParse \
	./internal/protocol:FuzzReadFrame \
	./internal/protocol:FuzzVerify \
	./internal/check:FuzzReadResponse \
	./internal/status:FuzzDecodeMatchesJSON

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: toolchain
toolchain: ## Show the Go toolchain the targets use
	@echo "GOTOOLCHAIN=$(GOTOOLCHAIN)"; $(GO) version

.PHONY: build
build: ## Build static binaries into bin/ (CGO_ENABLED=0, -trimpath, version stamped)
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do \
		if [ -d cmd/$$b ]; then \
			CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$b ./cmd/$$b || exit 1; \
		fi; \
	done
	@ls $(BIN)

.PHONY: test
test: lint build tools ## gofmt + vet, all tests with -race (real Nagios e2e included), brief fuzzing
	SELFHEAL_BIN=$(BIN) $(GO) test -race -count=1 -timeout 20m ./...
	@$(MAKE) --no-print-directory fuzz

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 8s)
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		if [ -d $$pkg ] && grep -qs "func $$name(" $$pkg/*_test.go; then \
			echo "fuzz $$pkg $$name"; \
			$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		fi; \
	done

# staticcheck is pinned in its own module (tools/lint), as nfpm is in
# tools/nfpm, so that the product's go.mod lists only what the binaries link.
.PHONY: lint
lint: ## gofmt, go vet and staticcheck must be clean
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go' 2>/dev/null)); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool -modfile=tools/lint/go.mod staticcheck ./...
	@bash packaging/unit-scores.sh

.PHONY: bench
bench: build ## Benchmarks against the real peers (check_http, xinetd, NRPE) and time to heal
	@for s in internal/lab/bench/*.sh; do [ -f "$$s" ] && BIN=$(BIN) bash "$$s" || exit 1; done

# The narrated story is a lab command (internal/lab/demo), never installed:
# it drives a throwaway Nagios, so it stays out of the installed demo_worker.
.PHONY: demo-story
demo-story: build
	@mkdir -p $(BUILD)
	@CGO_ENABLED=0 $(GO) build -trimpath -o $(BUILD)/demo ./internal/lab/demo

.PHONY: scale
scale: build ## The scale lab (not in `make test`): N simulated workers (default 10000) on HOSTS agents, an Icinga 2 HA zone
	SELFHEAL_SCALE=$${N:-10000} HOSTS=$${HOSTS:-} SELFHEAL_BIN=$(abspath $(BIN)) $(GO) test -count=1 -v -timeout 120m -run TestScale ./internal/lab/scale/

.PHONY: demo
demo: demo-story ## The full self-heal loop on this machine, narrated (needs only Go)
	$(BUILD)/demo --bin-dir $(BIN)

.PHONY: demo-nagios
demo-nagios: demo-story ## The same story under a real Nagios Core 4 (needs nagios4)
	$(BUILD)/demo --nagios --bin-dir $(BIN)

.PHONY: man
man: build ## Man pages, rendered by each binary from its own grammar, into build/man
	@rm -rf $(BUILD)/man && mkdir -p $(BUILD)/man
	@for b in $(BINARIES); do \
		[ -x $(BIN)/$$b ] || continue; \
		sec=$$($(BIN)/$$b --help-man | awk '/^\.TH/ {print $$3; exit}'); \
		$(BIN)/$$b --help-man >$(BUILD)/man/$$b.$$sec || exit 1; \
	done
	@ls $(BUILD)/man

.PHONY: tools
tools: ## Build the pinned packaging tools once per machine (nfpm, ~/.cache/selfheal/tools)
	@GO='$(GO)' bash packaging/tools.sh nfpm >/dev/null

.PHONY: package
package: man ## Debian packages selfheal-node and selfheal-agent into dist/ (nfpm; docs/packaging.md)
	GO='$(GO)' LDFLAGS='$(LDFLAGS)' DEB_VERSION='$(DEB_VERSION)' MAN='$(BUILD)/man' DIST='$(DIST)' \
		bash packaging/build.sh $(DEB_ARCHES)

# install builds only when it must and may: under sudo, secure_path has no
# Go and a build would leave root-owned files in a user's tree, so it says
# to build first; as root without sudo (a root-only host) it builds.
.PHONY: install
install: ## Install as the packages do, under PREFIX (user, dirs, fleet key, config, objects, units); DESTDIR to stage
	@for b in check_worker handle_worker worker_listener demo_worker; do \
		if [ ! -x $(BIN)/$$b ]; then \
			if [ -n "$$SUDO_USER" ]; then \
				echo "make install: $(BIN)/$$b is missing. Build first, as your own user, then install:" >&2; \
				echo "    make build && sudo make install" >&2; \
				exit 1; \
			fi; \
			$(MAKE) --no-print-directory build >/dev/null || exit 1; \
			break; \
		fi; \
	done
	@BIN='$(BIN)' PREFIX='$(PREFIX)' PLUGINDIR='$(PLUGINDIR)' MANDIR='$(MANDIR)' DESTDIR='$(DESTDIR)' \
		bash packaging/source-install.sh install

.PHONY: uninstall
uninstall: ## Stop and remove what `make install` installed (PURGE=1: also config, keys, state, logs)
	@BIN='$(BIN)' PREFIX='$(PREFIX)' PLUGINDIR='$(PLUGINDIR)' MANDIR='$(MANDIR)' DESTDIR='$(DESTDIR)' PURGE='$(PURGE)' \
		bash packaging/source-install.sh uninstall

.PHONY: clean
clean: ## Remove bin/, build/, dist/ and test caches
	rm -rf $(BIN) $(BUILD) dist
	$(GO) clean -testcache
