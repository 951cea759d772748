# baton: make test runs on a fresh machine (it installs valkey-server first).
GO      ?= go
PKGS    ?= ./...
BENCHTIME ?= 2s

.PHONY: test valkey vet bench bench-peers lint cover demo tidy-check examples failover

## test: install valkey-server if missing, vet, build and vet the examples, and run every test with -race
test: valkey vet examples
	$(GO) test -race -count=1 -p 2 -timeout 20m $(PKGS)

valkey:
	@scripts/ensure-valkey.sh

vet:
	$(GO) vet $(PKGS)

## examples: vet and build the runnable examples (their own module, with the OTel SDK)
examples:
	cd examples && $(GO) vet ./... && $(GO) build ./...

## failover: TestFailover's campaign, FAILOVERS (20) failovers of each kind on a real Cluster and Sentinel
## group, with and without replica acknowledgement; prints the tables of docs/operations.md (about 12 minutes)
FAILOVERS ?= 20
failover: valkey
	@table=$$(mktemp); \
	$(GO) test -race -count=1 -timeout 90m -run '^TestFailover$$' ./election -failover.count=$(FAILOVERS) -failover.table=$$table; \
	status=$$?; cat $$table; rm -f $$table; exit $$status

## demo: three `baton run` candidates on a private valkey-server: crash failover and resign handoff, measured
demo:
	scripts/demo.sh

## bench: the library's benchmarks against a real valkey-server (figures, not pass/fail)
bench: valkey
	$(GO) test -run '^$$' -bench . -benchtime=$(BENCHTIME) -timeout 20m $(PKGS)

## bench-peers: baton side by side with the Go peers; rewrites docs/benchmarks.md
bench-peers: valkey
	cd bench && $(GO) run . -write ../docs/benchmarks.md

## lint: go vet plus staticcheck
lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## cover: test coverage per package, HTML report in cover.html
cover: valkey
	$(GO) test -race -count=1 -coverprofile=cover.out $(PKGS)
	$(GO) tool cover -func=cover.out | tail -1
	$(GO) tool cover -html=cover.out -o cover.html

## tidy-check: go.mod and go.sum are tidy
tidy-check:
	$(GO) mod tidy -diff
