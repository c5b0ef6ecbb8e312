# ottu-recon. `make demo` runs the whole system end to end; `make test` runs the tests.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build test test-modern test-cluster vet lint unit bench fuzz demo clean clickhouse-start clickhouse-stop screenshots

build:
	$(GO) build -o bin/ ./cmd/...

vet:
	$(GO) vet ./...
	$(GO) vet -tags chdb ./internal/clickhouse
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

# The linters (scripts/lint.sh): staticcheck and deadcode, pinned in tools.mod
# and kept out of the product's module graph; zero findings.
lint:
	scripts/lint.sh

# The whole suite: vet and the linters, then every test with the race detector against an
# embedded NATS, Debian's Alertmanager and promtool (scripts/prometheus.sh: the
# findings posted to a real Alertmanager, the daemons' alerting rules), Debian's chromium for the console (scripts/chromium.sh; its
# screenshots land in .tmp/screenshots), a real ClickHouse 18.16 (started by scripts/clickhouse.sh)
# and a replicated cluster of two (scripts/clickhouse-cluster.sh: ZooKeeper
# and two 18.16 replicas), then the modern-ClickHouse check: every statement
# the product sent, replayed in ClickHouse 26.7 in process (chDB, installed by
# scripts/chdb.sh) and compared with 18.16's answers.
test: vet lint
	CONSOLE_SCREENSHOTS=$(CURDIR)/.tmp/screenshots scripts/chromium.sh run scripts/prometheus.sh run scripts/clickhouse.sh run scripts/clickhouse-cluster.sh run \
		sh -c '$(GO) test -race -count=1 -timeout 15m ./... && \
		scripts/chdb.sh run $(GO) test -tags chdb -count=1 -run TestModernClickHouse -v ./internal/clickhouse'

# The console's browser test alone, writing the README's screenshots into
# docs/screenshots.
screenshots:
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs/screenshots scripts/chromium.sh run scripts/clickhouse.sh run \
		$(GO) test -count=1 -run TestConsole_Browser -v ./internal/reconcile

# The replicated-cluster tests alone.
test-cluster:
	scripts/clickhouse-cluster.sh run $(GO) test -count=1 -run TestCluster -v ./internal/clickhouse ./internal/reconcile

# The modern-ClickHouse check alone.
test-modern:
	scripts/clickhouse.sh run scripts/chdb.sh run $(GO) test -tags chdb -count=1 -run TestModernClickHouse -v ./internal/clickhouse

# Pure-logic tests only: no ClickHouse needed.
unit:
	$(GO) test -race ./internal/events ./internal/spool ./internal/envconfig

# The whole system end to end on this machine (see scripts/demo.sh).
demo:
	scripts/demo.sh

# The figures of README "Performance" against their yardsticks (PARENTS=1000000
# by default), then the Go benchmarks.
bench:
	scripts/clickhouse.sh run scripts/bench.sh
	scripts/clickhouse.sh run $(GO) test -run='^$$' -bench=. -benchmem ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=30s ./internal/events
	$(GO) test -run='^$$' -fuzz=FuzzVerify -fuzztime=30s ./internal/events
	$(GO) test -run='^$$' -fuzz=FuzzCheckShape -fuzztime=30s ./internal/events
	$(GO) test -run='^$$' -fuzz=FuzzCanonical -fuzztime=30s ./internal/events

clickhouse-start:
	scripts/clickhouse.sh start

clickhouse-stop:
	scripts/clickhouse.sh stop

clean:
	rm -rf bin .tmp data
