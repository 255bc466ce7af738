# paxosd developer targets. `make check` is what CI runs (see .ci/run).

GO       ?= go
SEEDS    ?= 3000
FUZZTIME ?= 60s
export GOTRACEBACK := all

FUZZ_TARGETS := \
	./paxos:FuzzDecodeBatch \
	./paxos/wire:FuzzDecodeMessage \
	./paxos/wire:FuzzDecodeClientFrames \
	./statemachine:FuzzDecodeKVRequest \
	./statemachine:FuzzDecodeKVResponse \
	./statemachine:FuzzRestore \
	./wal:FuzzDecodeKV \
	./wal:FuzzReadSnapshot

VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
IMAGE    ?= paxosd:dev

.PHONY: check fmt vet lint tidy test sim sim-wal sessions-1m fuzz bench build image

check: fmt vet lint tidy test

fmt:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }

vet:
	$(GO) vet ./...

lint:
	$(GO) tool staticcheck ./...

tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }

test:
	$(GO) test -race -shuffle=on ./...

# A long simulator sweep: make sim SEEDS=20000
sim:
	$(GO) test ./tests/sim -run 'TestSim$$' -count=1 -seeds=$(SEEDS)

sim-wal:
	$(GO) test ./tests/sim -run 'TestSimWAL$$' -count=1 -wal-seeds=$(SEEDS)

# A million client sessions, each opened and written once (about a minute).
sessions-1m:
	PAXOSD_SESSIONS=1000000 $(GO) test ./paxos/server -run 'TestSessionsStayBounded$$' -count=1 -v -timeout 30m

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg)"; \
		$(GO) test $$pkg -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) || exit 1; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -count=10 ./... | tee bench.txt

# A static binary (no cgo, no libc), its version stamped from git.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/paxosd ./cmd/paxosd

# The container image: FROM scratch, the static binary alone.
image: build
	docker build -t $(IMAGE) .
