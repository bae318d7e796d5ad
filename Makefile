# renewals: `make run` starts the whole service on embedded defaults;
# `make test` runs every test against real servers it starts itself.
GO      ?= go
BIN     := bin/renewals
PKGS    := ./...

.PHONY: build run test fuzz bench vet fmt tidy clean

build:
	$(GO) build -o $(BIN) ./services/renewals

run: build
	RENEWALS_LOG_FORMAT=$${RENEWALS_LOG_FORMAT:-console} ./$(BIN) serve

test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 9m $(PKGS)
	$(GO) test -run='^$$' -fuzz=FuzzParseAndValidate -fuzztime=10s ./pkg/importer

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseAndValidate -fuzztime=2m ./pkg/importer

bench:
	@command -v smtp-sink >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "bench: installing postfix for smtp-sink and smtp-source"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null && { postfix stop 2>/dev/null || true; }; \
	  else \
	    echo "bench: smtp-sink missing, the notifier benchmarks will skip: sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postfix && sudo postfix stop"; \
	  fi; }
	$(GO) test -p 1 -run='^$$' -bench=. -benchtime=1x ./...  # -p 1: one package's benchmarks at a time, so none competes for the CPUs

fmt:
	gofmt -w services pkg templates

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin
