# sluice needs Go 1.27 (generic methods). A machine whose own Go is older
# fetches this exact toolchain from the module proxy on first use.
export GOTOOLCHAIN := go1.27.3

GO ?= go
# make 4.3 does not export variables to $(shell): pass the toolchain along.
GOFMT = $(shell GOTOOLCHAIN=$(GOTOOLCHAIN) $(GO) env GOROOT)/bin/gofmt
BIN := bin

.PHONY: all build test vet fmt bench demo clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet ./...

# gofmt of the pinned toolchain: the machine's own may not parse generic methods.
fmt:
	@out=$$($(GOFMT) -l $$(git ls-files '*.go') 2>&1); if [ -n "$$out" ]; then echo "gofmt needed (or failed):"; echo "$$out"; exit 1; fi

test: fmt vet
	$(GO) test -race -timeout 9m ./...

# The per-record step on the test driver, then sluice's loops against a raw
# franz-go transactional loop on one embedded broker (see cmd/bench).
BENCH_FLAGS ?= -runs 5 -rss
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./stream/...
	$(GO) run ./cmd/bench $(BENCH_FLAGS)

demo: build
	$(BIN)/runner demo passthrough

clean:
	rm -rf $(BIN)
