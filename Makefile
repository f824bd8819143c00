# Shoal. `make help` lists the targets; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null || echo 0.0.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILDINFO := github.com/shoal-hci/shoal/appliance/internal/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).Version=$(VERSION) -X $(BUILDINFO).Commit=$(COMMIT)

# Every Debian package the project needs on a fresh bookworm machine.
DEBS := \
	ca-certificates git make \
	qemu-system-x86 qemu-utils ovmf \
	libnbd-bin nbd-client fio \
	dnsmasq-base nftables iproute2 iputils-ping procps psmisc util-linux fuse3 \
	debootstrap squashfs-tools systemd-boot-efi mtools dosfstools fdisk e2fsprogs binutils zstd

# Race detector where affordable: on by default, RACE= to turn it off.
RACE ?= -race
# qa scenarios that `make test` runs (the fast ones); `make qa` runs all.
QA_FAST ?= Fast

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/shoal, bin/shoal-qa and bin/shoal-agent (the in-guest agent)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/shoal ./appliance/cmd/shoal
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/shoal-qa ./qa/cmd/shoal-qa
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/shoal-agent ./hypervisor/cmd/shoal-agent

.PHONY: deps
deps: ## install every Debian package and Go module the project needs (idempotent)
	@command -v $(GO) >/dev/null || { echo "make deps: Go 1.26 is required and is not on PATH (install it to /usr/local/go)"; exit 1; }
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null | grep -qx installed || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing" $$missing; \
		[ "$$(id -u)" = 0 ] || { echo "make deps: run as root to install Debian packages"; exit 1; }; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi
	$(GO) mod download

.PHONY: lint
lint: ## gofmt, go vet, staticcheck, go.mod tidy
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:" $$unformatted; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags qa ./qa/...
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags qa ./qa/...
	$(GO) mod tidy -diff

.PHONY: test
test: lint ## lint, go test (with -race), fast qa scenarios; what CI runs
	$(GO) test $(RACE) -count=1 -timeout 30m ./...
	@if [ "$$(id -u)" = 0 ]; then \
		$(GO) test -tags qa -count=1 -timeout 35m -run '$(QA_FAST)' ./qa/...; \
	else echo "make test: qa scenarios need root; skipped (run as root, as CI does)"; fi

.PHONY: qa
qa: ## every qa scenario (root)
	$(GO) test -tags qa -count=1 -timeout 60m -v ./qa/...

.PHONY: bench
bench: ## benchmarks; each prints its figures next to its baseline (the VM figures need root)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	@if [ "$$(id -u)" = 0 ]; then \
		$(GO) test -tags qa -count=1 -timeout 20m -run '^$$' -bench VM -benchtime 1x ./qa/; \
	else echo "make bench: the VM figures (qa BenchmarkVM) need root; skipped"; fi

.PHONY: demo
demo: ## boot three appliance images in QEMU; they form a cluster by themselves (root; make demo-down)
	@$(BIN)/shoal-qa vm down >/dev/null 2>&1 || true # a fresh demo each time
	@start=$$SECONDS; $(MAKE) --no-print-directory image || exit 1; \
	echo "demo: build (binaries + image) took $$((SECONDS - start)) s; image sizes above"
	$(BIN)/shoal-qa vm up -n 3 --wait
	$(BIN)/shoal-qa vm exec node1 -- shoal status
	@$(BIN)/shoal-qa vm status
	@echo "demo: the three nodes keep running. Try '$(BIN)/shoal-qa vm exec node2 -- shoal node ls',"
	@echo "      '$(BIN)/shoal-qa vm add-node', '$(BIN)/shoal-qa vm cut node3 0', '$(BIN)/shoal-qa vm console node1'."
	@echo "      node1's node API (HTTPS, mutual TLS: a member certificate is needed) is on https://127.0.0.1:17443."
	@echo "      Stop with 'make demo-down'."

.PHONY: demo-proc
demo-proc: build ## the same cluster as processes in network namespaces (fast, root)
	@$(BIN)/shoal-qa down >/dev/null 2>&1 || true # a fresh demo each time
	$(BIN)/shoal-qa up -n 3 --shoal $(BIN)/shoal
	@echo "demo: no command is given to any node; waiting for them to form a cluster (about 20 s)..."
	@for i in $$(seq 1 60); do \
		n=$$($(BIN)/shoal-qa exec node1 -- shoal node ls --json 2>/dev/null | grep -c '"state": "alive"'); \
		[ "$$n" -ge 3 ] && break; sleep 2; done
	$(BIN)/shoal-qa exec node1 -- shoal status
	@echo "demo: try '$(BIN)/shoal-qa exec node2 -- shoal node ls', '$(BIN)/shoal-qa add-node', '$(BIN)/shoal-qa kill node3'; stop with 'make demo-down'"

.PHONY: demo-down
demo-down: ## remove the demo cluster (image-level and process-level)
	$(BIN)/shoal-qa vm down
	$(BIN)/shoal-qa down

.PHONY: image
image: build ## build the bootable appliance image into out/ (root; ~4 min cold, seconds warm)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/shoal-image ./image-build/cmd/shoal-image
	$(BIN)/shoal-image build --shoal $(BIN)/shoal --out out --version $(VERSION)

.PHONY: clean
clean: ## remove build outputs
	rm -rf $(BIN) out
