# sluice needs Go 1.27 (generic methods). A machine whose own Go is older
# fetches this exact toolchain from the module proxy on first use.
export GOTOOLCHAIN := go1.27.3

GO ?= go
# make 4.3 does not export variables to $(shell): pass the toolchain along.
GOFMT = $(shell GOTOOLCHAIN=$(GOTOOLCHAIN) $(GO) env GOROOT)/bin/gofmt
BIN := bin

.PHONY: all build test vet fmt kcat postgres bench demo chaos clean

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

# A Postgres server (Debian's postgresql package) for the Postgres sink's
# tests and benchmarks (txn/pgserver starts a throwaway server from its
# binaries, as an unprivileged user when run as root).
# Installed once, with apt-get, when missing; silent when present.
postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
		echo "installing postgresql with apt-get (the Postgres sink's tests start a server from it)"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null && \
		ls /usr/lib/postgresql/*/bin/postgres >/dev/null; }

test: kcat postgres fmt vet
	$(GO) test -race -timeout 13m ./...

# The per-record step on the test driver, then sluice's loops against a raw
# franz-go transactional loop on one embedded broker (see cmd/bench), then
# the Postgres sink against a plain batched insert loop (see cmd/sinkbench),
# then the outbox relay against a raw select-and-produce loop (see
# cmd/relaybench).
BENCH_FLAGS ?= -runs 5 -rss
SINKBENCH_FLAGS ?= -runs 5
RELAYBENCH_FLAGS ?= -rows 500000 -runs 5
bench: postgres
	$(GO) test -run '^$$' -bench . -benchmem ./stream/...
	$(GO) test -run '^$$' -bench ExpiringBehind -benchtime 200000x ./state/
	$(GO) run ./cmd/bench $(BENCH_FLAGS)
	$(GO) run ./cmd/sinkbench $(SINKBENCH_FLAGS)
	$(GO) run ./cmd/relaybench $(RELAYBENCH_FLAGS)

# Three example apps end to end, each on an embedded broker of its own
# with three worker processes, one of them SIGKILLed and restarted, and
# its output verified with read_committed readers: enrich (a repartition
# and a table join), dedup, and the windowed revenue (runner demo APP;
# progress on stderr, each report on stdout); then the outbox relay and
# the Postgres sink end to end on a throwaway Postgres, with the dedup
# and enrich apps between them (runner demo outbox). About 40 s on 2 cores.
DEMO_RECORDS ?= 200000
demo: build postgres
	$(BIN)/runner demo enrich --records $(DEMO_RECORDS)
	$(BIN)/runner demo dedup --records $(DEMO_RECORDS)
	$(BIN)/runner demo revenue --records $(DEMO_RECORDS)
	$(BIN)/runner demo outbox
	@echo
	@echo 'Where to look: a worker serves its metrics, probes and queries on --metrics-addr'
	@echo '(default 127.0.0.1:9100). With a broker and a worker of your own running'
	@echo '(docs/getting-started.md; "bin/runner broker", "bin/runner topics create enrich",'
	@echo '"bin/runner run enrich --instance w1"):'
	@echo '  http://127.0.0.1:9100/metrics               sluice_* metrics (docs/operations.md)'
	@echo '  http://127.0.0.1:9100/readyz                ready once every task is restored'
	@echo '  http://127.0.0.1:9100/stores/{store}/{key}  a store value, e.g. /stores/customers/c7'

# The chaos suite (cmd/chaos): the four apps' worker processes under faults
# drawn from a seed, for DURATION, then checked. `make test` runs a short,
# fixed-seed run of it (TestChaosShort).
DURATION ?= 20m
CHAOS_FLAGS ?=
chaos: build kcat
	$(GO) run ./cmd/chaos -runner $(BIN)/runner -duration $(DURATION) $(CHAOS_FLAGS)

clean:
	rm -rf $(BIN)
