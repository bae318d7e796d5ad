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
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...

fmt:
	gofmt -w services pkg templates

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin
