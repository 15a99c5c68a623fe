# sluice needs Go 1.27 (generic methods). A machine whose own Go is older
# fetches this exact toolchain from the module proxy on first use.
export GOTOOLCHAIN := go1.27.3

GO ?= go
# make 4.3 does not export variables to $(shell): pass the toolchain along.
GOFMT = $(shell GOTOOLCHAIN=$(GOTOOLCHAIN) $(GO) env GOROOT)/bin/gofmt
BIN := bin

.PHONY: all build test vet fmt kcat bench demo chaos clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet ./...

# gofmt of the pinned toolchain: the machine's own may not parse generic methods.
fmt:
	@out=$$($(GOFMT) -l $$(git ls-files '*.go') 2>&1); if [ -n "$$out" ]; then echo "gofmt needed (or failed):"; echo "$$out"; exit 1; fi

# kcat (librdkafka's command-line client, Debian's package) reads the
# embedded broker in its conformance suite (txn/broker), which fails without
# it. Installed once, with apt-get, when missing; silent when present.
kcat:
	@command -v kcat >/dev/null 2>&1 || { \
		echo "installing kcat with apt-get (the broker conformance suite reads with it)"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kcat >/dev/null && \
		command -v kcat >/dev/null; }

test: kcat fmt vet
	$(GO) test -race -timeout 13m ./...

# The per-record step on the test driver, then sluice's loops against a raw
# franz-go transactional loop on one embedded broker (see cmd/bench).
BENCH_FLAGS ?= -runs 5 -rss
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./stream/...
	$(GO) test -run '^$$' -bench ExpiringBehind -benchtime 200000x ./state/
	$(GO) run ./cmd/bench $(BENCH_FLAGS)

demo: build
	$(BIN)/runner demo passthrough

# The chaos suite (cmd/chaos): the four apps' worker processes under faults
# drawn from a seed, for DURATION, then checked. `make test` runs a short,
# fixed-seed run of it (TestChaosShort).
DURATION ?= 20m
CHAOS_FLAGS ?=
chaos: build kcat
	$(GO) run ./cmd/chaos -runner $(BIN)/runner -duration $(DURATION) $(CHAOS_FLAGS)

clean:
	rm -rf $(BIN)
