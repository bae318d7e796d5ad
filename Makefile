# renewals: `make run` starts the whole service on embedded defaults;
# `make test` runs every test against real servers it starts itself.
GO      ?= go
BIN     := bin/renewals
PKGS    := ./...

.PHONY: build run test fuzz bench vet fmt tidy clean

build:
	$(GO) build -o $(BIN) ./services/renewals

# The reseller's name and contacts appear in every email; these samples say
# they are samples until RENEWALS_RESELLER_* are set.
run: build
	RENEWALS_LOG_FORMAT=$${RENEWALS_LOG_FORMAT:-console} \
	RENEWALS_RESELLER_NAME="$${RENEWALS_RESELLER_NAME:-Sample Reseller Ltd (sample)}" \
	RENEWALS_RESELLER_PHONE="$${RENEWALS_RESELLER_PHONE:-01234 567890 (sample)}" \
	RENEWALS_RESELLER_EMAIL="$${RENEWALS_RESELLER_EMAIL:-renewals@reseller.example}" \
	./$(BIN) serve

# The fuzz runs in test are bounded by a count of inputs, not a duration: Go
# 1.26's fuzzing coordinator can fail a run that reaches its -fuzztime
# deadline with "context deadline exceeded" and no failing input
# (go.dev/issue/75804), and minimizing each new input stops the count for
# seconds at a time, which a count of about ten seconds' work does not need.
test:
	$(GO) vet $(PKGS)
	$(GO) vet -tags faultpause ./services/cli/
	$(GO) test -count=1 -timeout 12m $(PKGS)
	$(GO) test -run='^$$' -fuzz=FuzzParseAndValidate -fuzztime=80000x -fuzzminimizetime=0 ./pkg/importer
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=40000x -fuzzminimizetime=0 ./pkg/bounce

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseAndValidate -fuzztime=2m ./pkg/importer
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=1m ./pkg/bounce

# The build before issue 11 (the standard library and go-mail in place of the
# hand-written codecs, templates and SMTP pipelining), which
# BenchmarkNotifierStores measures beside the tree in the same sitting. It is
# built from git into bin/ once, into a file named after the commit, so
# that another BEFORE_ISSUE_11 builds its own; without git history the
# benchmark measures the tree alone.
BEFORE_ISSUE_11 ?= 8015019
BEFORE_BIN      := bin/renewals-$(BEFORE_ISSUE_11)

$(BEFORE_BIN):
	@d=$$(mktemp -d) && git archive $(BEFORE_ISSUE_11) | tar -x -C $$d && \
	  (cd $$d && $(GO) build -o $(CURDIR)/$@ ./services/renewals); s=$$?; rm -rf $$d; exit $$s

# The headline figures (one run each: the import of a million rows into
# Redis, as CSV and as an .xlsx workbook, and into the embedded default, then
# again unchanged, the catch-up pass, the pass on a three-node NATS cluster
# with R1 and R3, the notifier into Postfix's smtp-sink against
# smtp-source, 20,000 notices on each store with the CPU an email of the
# renewals binary, of redis-server and of nats-server, beside the build before
# issue 11, the embedded default with JetStream syncing every write and
# every two minutes) and then the micro-benchmarks of each package.
bench:
	@command -v smtp-sink >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "bench: installing postfix for smtp-sink and smtp-source"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null && { postfix stop 2>/dev/null || true; }; \
	  else \
	    echo "bench: smtp-sink missing, the notifier benchmarks will skip: sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postfix && sudo postfix stop"; \
	  fi; }
	$(GO) test -run='^$$' -bench='^BenchmarkImport1M$$' -benchtime=1x ./services/e2e/
	$(GO) test -run='^$$' -bench='^BenchmarkImportXLSX1M$$' -benchtime=1x -timeout 30m ./services/e2e/
	$(GO) test -run='^$$' -bench='^BenchmarkImportXLSXSharedStrings$$' -benchtime=1x ./services/e2e/
	$(GO) test -run='^$$' -bench='^BenchmarkCatchUpPass$$' -benchtime=1x ./services/scheduler/
	$(GO) test -run='^$$' -bench='^BenchmarkCatchUpPassCluster$$' -benchtime=1x ./services/scheduler/
	$(GO) test -run='^$$' -bench='^BenchmarkNotifier(Throughput|Latency)$$' -benchtime=1x ./services/e2e/
	-@$(MAKE) --no-print-directory $(BEFORE_BIN)
	RENEWALS_BENCH_BASELINE=$$([ -x $(BEFORE_BIN) ] && echo $(CURDIR)/$(BEFORE_BIN)) \
	  $(GO) test -run='^$$' -bench='^BenchmarkNotifierStores$$' -benchtime=1x ./services/e2e/
	$(GO) test -run='^$$' -bench='^BenchmarkEmbeddedDefault$$' -benchtime=1x ./services/e2e/
	$(GO) test -p 1 -run='^$$' -bench=. ./pkg/...

fmt:
	gofmt -w services pkg templates

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin
