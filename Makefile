# Extrasphere — build, run, test, bench.
#
#   make build   bin/extrasphere (static, CGO_ENABLED=0, version stamped)
#   make run     build, then serve ./extrasphere-data in the foreground with a demo volume
#                (DATA=dir, NBD=host:port or NBD= for the unix socket only)
#   make test    Debian deps, gofmt, vet, unit tests (-race), TCG guest, interop tests, fuzz smoke
#   make bench   bench/nbd.sh: fio against qemu-nbd, nbdkit and Extrasphere (results in bench/out/)
#   make bench-migrate / bench-backup   bench/migrate.sh (vs cp) / bench/backup.sh (vs restic)
#   make bench-mirror   bench/mirror.sh: sync mirror vs no mirror vs QEMU's active mirror (local and +5 ms)
#   make soak    bench/soak.sh (root, not in CI): TRIALS=1000 SIGKILL trials and CUTS=200 link cuts under a
#                verifying write load with CBT, a snapshot and a sync mirror; SOAK_FUZZTIME=10m per NBD fuzz target
#   make deps | fmt | vet | unit | integration | fuzz | guest | clean
#
# `make test` is what .ci/run runs; it must pass on a fresh Debian 12 machine with Go installed.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/extrasphere
DATA     ?= ./extrasphere-data
NBD      ?= 127.0.0.1:10809
# A count, not a duration: with go1.26 a time-based -fuzztime can stall after
# the baseline (seen: 10 execs in 10 s on internal/cbt), a count always runs.
FUZZTIME ?= 200000x
# The soak's fuzz time per target (bench/soak.sh); FUZZTIME above is the CI smoke's.
SOAK_FUZZTIME ?= 10m
export GO FUZZTIME VERSION

.PHONY: build run deps test unit integration fuzz guest bench bench-migrate bench-backup bench-mirror soak fmt vet clean help

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/extrasphere

run: build
	EXTRASPHERE_BIN=$(abspath $(BIN)) EXTRASPHERE_NBD='$(NBD)' scripts/run.sh $(DATA)

deps:
	scripts/deps.sh

test:
	scripts/test.sh

# Single stages of `make test` (they assume `make deps` has run).
unit:
	STAGES="build unit" scripts/test.sh

integration:
	STAGES="build guest integration" scripts/test.sh

fuzz:
	STAGES="fuzz" scripts/test.sh

guest:
	tests/guest/build.sh tests/guest/out

bench: deps build
	bench/nbd.sh

bench-migrate: deps build
	bench/migrate.sh

bench-backup: deps build
	bench/backup.sh

bench-mirror: deps build
	bench/mirror.sh

soak: deps build
	FUZZTIME=$(SOAK_FUZZTIME) bench/soak.sh

fmt:
	find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -exec gofmt -w {} +

vet:
	STAGES="fmt vet" scripts/test.sh

clean:
	rm -rf bin bench/out tests/guest/out

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'
