# baton: make test runs on a fresh machine (it installs valkey-server first).
GO      ?= go
PKGS    ?= ./...
BENCHTIME ?= 2s

.PHONY: test valkey vet bench bench-peers lint cover demo tidy-check examples chaos failover

## test: install valkey-server if missing, vet, vet/build/test the examples, and run every test with -race
test: valkey vet examples
	$(GO) test -race -count=1 -p 2 -timeout 20m $(PKGS)

valkey:
	@scripts/ensure-valkey.sh

vet:
	$(GO) vet $(PKGS)

## examples: vet, build and test the runnable examples (their own module, with the OTel SDK)
examples: valkey
	cd examples && $(GO) vet ./... && $(GO) build ./... && $(GO) test -race -count=1 ./...

## failover: TestFailover's campaign, FAILOVERS (20) failovers of each kind on a real Cluster and Sentinel
## group, with and without replica acknowledgement; prints the tables of docs/operations.md (about 8 minutes)
FAILOVERS ?= 20
failover: valkey
	@table=$$(mktemp); \
	$(GO) test -race -count=1 -timeout 90m -run '^TestFailover$$' ./election -failover.count=$(FAILOVERS) -failover.table=$$table; \
	status=$$?; cat $$table; rm -f $$table; exit $$status

## demo: three `baton run` candidates on a private valkey-server: crash failover and resign handoff, measured
demo:
	scripts/demo.sh

## chaos: a long randomized fault campaign (docs/safety.md); every CHAOS_* variable can be overridden.
## CHAOS_SEED=0 takes the seed from the clock; a failed run prints the flags that replay it.
CHAOS_RUNS       ?= 200
CHAOS_SEED       ?= 0
CHAOS_DURATION   ?= 15s
CHAOS_CANDIDATES ?= 4
CHAOS_FAULTS     ?= all
CHAOS_MODE       ?= both
CHAOS_FLAGS      ?=
chaos: valkey
	$(GO) test -race ./internal/chaos -run '^TestChaos$$' -count=1 -timeout 0 -v -args \
		-chaos.runs=$(CHAOS_RUNS) -chaos.seed=$(CHAOS_SEED) -chaos.duration=$(CHAOS_DURATION) \
		-chaos.candidates=$(CHAOS_CANDIDATES) -chaos.faults=$(CHAOS_FAULTS) -chaos.mode=$(CHAOS_MODE) $(CHAOS_FLAGS)

## bench: the library's benchmarks against a real valkey-server (figures, not pass/fail)
bench: valkey
	$(GO) test -run '^$$' -bench . -benchtime=$(BENCHTIME) -timeout 20m $(PKGS)

## bench-peers: baton side by side with the Go peers; rewrites docs/benchmarks.md
bench-peers: valkey
	cd bench && $(GO) run . -write ../docs/benchmarks.md

## lint: go vet plus staticcheck
lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## cover: test coverage per package, HTML report in cover.html. cmd/baton's tests run the
## baton binary, built with -cover under this target; its coverage is in cover.out, so read the
## per-package figures below, not the ones go test prints (which count the test binary only).
cover: valkey
	$(GO) test -race -count=1 -coverprofile=cover.out $(PKGS)
	@echo "coverage per package, from cover.out:"
	@awk 'NR > 1 { split($$1, a, ":"); p = a[1]; sub(/\/[^\/]*$$/, "", p); \
		if (!($$1 in n)) { n[$$1] = $$2; pkg[$$1] = p } if ($$3 > 0) hit[$$1] = 1 } \
		END { for (b in n) { all[pkg[b]] += n[b]; if (b in hit) cov[pkg[b]] += n[b] } \
		for (p in all) printf "  %-48s %5.1f%%\n", p, 100 * cov[p] / all[p] }' cover.out | sort
	$(GO) tool cover -func=cover.out | tail -1
	$(GO) tool cover -html=cover.out -o cover.html

## tidy-check: go.mod and go.sum are tidy
tidy-check:
	$(GO) mod tidy -diff
