GO ?= go
BIN := bin/sparsecast

.PHONY: build test vet fmt fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/sparsecast

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
