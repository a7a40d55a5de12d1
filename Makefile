# selfheal: check_worker, handle_worker, worker_listener, demo_worker.
# `make help` lists the targets.

SHELL      := /bin/bash
MODULE     := github.com/selfheal/selfheal
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X $(MODULE)/internal/version.Version=$(VERSION)
BINARIES   := check_worker handle_worker worker_listener demo_worker
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

# Fuzz targets run briefly by `make test`: package:FuzzName.
FUZZ_TARGETS := \
	./internal/thresholds:FuzzParse \
	./internal/status:FuzzParse \
	./internal/protocol:FuzzReadFrame \
	./internal/protocol:FuzzVerify \
	./internal/check:FuzzReadResponse

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
test: lint build ## gofmt + vet, all tests with -race (real Nagios e2e included), brief fuzzing
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

.PHONY: lint
lint: ## gofmt, go vet and staticcheck must be clean
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go' 2>/dev/null)); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

.PHONY: bench
bench: build ## Benchmarks against the real peers (check_http, xinetd, NRPE) and time to heal
	@for s in internal/lab/bench/*.sh; do [ -f "$$s" ] && BIN=$(BIN) bash "$$s" || exit 1; done

.PHONY: demo
demo: build ## The full self-heal loop on this machine, narrated (needs only Go)
	$(BIN)/demo_worker demo --bin-dir $(BIN)

.PHONY: demo-nagios
demo-nagios: build ## The same story under a real Nagios Core 4 (needs nagios4)
	$(BIN)/demo_worker demo --nagios --bin-dir $(BIN)

.PHONY: install
install: build ## Install plugins into PLUGINDIR and the agent into PREFIX/sbin
	install -d $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(PREFIX)/sbin
	install -m 0755 $(BIN)/check_worker $(BIN)/handle_worker $(DESTDIR)$(PLUGINDIR)/
	install -m 0755 $(BIN)/worker_listener $(DESTDIR)$(PREFIX)/sbin/

.PHONY: clean
clean: ## Remove bin/ and test caches
	rm -rf $(BIN)
	$(GO) clean -testcache
