# Keyward. `make run` starts Keyward on the embedded default (a local SoftHSM
# token and bbolt store it creates under ./var); `make test` runs every test.
GO       ?= go
DATA_DIR ?= var
# Fuzz budgets are execution counts, not durations: with a duration, Go
# 1.26's fuzz coordinator can report a spurious "context deadline exceeded"
# at the deadline (golang/go#75804, fixed in Go 1.27). 200,000 executions
# take 6-12 s per target here.
FUZZTIME ?= 200000x
# Minimising a new input can take tens of seconds on the XML parser; in
# short runs that starves the search and can overrun the deadline.
FUZZMINIMIZE ?= 1s
PKGS      = ./...

.PHONY: all deps deps-run deps-run-pg build etcd-bin test backup-drill conformance vet fmt-check fuzz-short fuzz bench scale run run-cluster kwsign ceremony bench-banking clean run-banking run-banking-pg bankcli

all: build

deps:
	@scripts/deps.sh
	@$(GO) mod download

# What running needs and no more (make run and the binaries): no browser,
# TPM stack, Node.js, fonts or PostgreSQL (run-banking-pg adds it).
deps-run:
	@scripts/deps.sh run
	@$(GO) mod download

deps-run-pg:
	@scripts/deps.sh run-pg
	@$(GO) mod download

build: deps-run
	$(GO) build $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: deps
	$(GO) vet $(PKGS)

# Every test, under the race detector, including the SoftHSM2 integration
# tests (softhsm-tests/) and short fuzz runs. The token conformance suite
# also runs on tpm2-pkcs11: TPM2_UP brings swtpm, a private D-Bus bus and
# tpm2-abrmd up in a temporary directory and tears them down on any exit.
# banking's suites (ledger, auth, the API; banking/store/dbtest) run a second
# time on PostgreSQL (KEYWARD_BANKING_STORE=postgres: a real server per test
# binary, a fresh database per test): one suite, both backends (issue 17).
test: deps fmt-check vet etcd-bin
	$(TPM2_UP); export KEYWARD_ETCD_BIN=$(ETCD_BIN) KEYWARD_ETCDUTL_BIN=$(ETCDUTL_BIN); $(GO) test -race -count=1 -timeout 20m $(PKGS)
	KEYWARD_BANKING_STORE=postgres $(GO) test -race -count=1 -timeout 10m $(BANKING_SUITES)
	$(MAKE) --no-print-directory fuzz-short

BANKING_SUITES = ./banking ./banking/auth/... ./banking/ledger ./banking/store/dbtest ./banking/bankaudit

# The restore drill (issue 17, R-AV-3): the weekly base backup and the WAL
# archive of banking's PostgreSQL restored to a point in time and to the
# end into fresh directories (books verified, balances checked), keysvc's
# hot copy restored and its audit chain verified; and keysvc's etcd store:
# a snapshot taken during signing restored into a new cluster and verified.
# Also part of make test. Figures: README, "Backups and the restore drill".
backup-drill: deps etcd-bin
	@export KEYWARD_ETCD_BIN=$(ETCD_BIN) KEYWARD_ETCDUTL_BIN=$(ETCDUTL_BIN); log=$$(mktemp); \
	$(GO) test -count=1 -timeout 15m -v -run '^(TestBackupDrill|TestKeysvcHotBackupBolt|TestKeysvcHotBackupEtcd)$$' ./softhsm-tests >$$log 2>&1; rc=$$?; \
	grep -v -e ' INFO ' -e 'level=INFO' $$log; rm -f $$log; exit $$rc

# The etcd server the cluster tests start (keysvc/etcdstore/etcdlocal): the
# real one, go.etcd.io/etcd/server/v3 at the version go.mod pins (a tool
# line), built once before the tests so test packages don't each build it.
# etcdutl (the same version, also a tool line) restores etcd snapshots:
# keysvc backups of an etcd store, etcdlocal.RestoreSnapshot.
ETCD_BIN ?= $(CURDIR)/bin/etcd
ETCDUTL_BIN ?= $(CURDIR)/bin/etcdutl
etcd-bin: deps
	$(GO) build -o $(ETCD_BIN) go.etcd.io/etcd/server/v3
	$(GO) build -o $(ETCDUTL_BIN) go.etcd.io/etcd/etcdutl/v3

# Only the conformance suite, on SoftHSM2 and tpm2-pkcs11.
conformance: deps
	$(TPM2_UP); $(GO) test -race -count=1 -v -run '^TestConformance$$' ./softhsm-tests

# scripts/tpm2-pkcs11.sh up into a temporary directory, torn down by the
# shell's EXIT trap, exporting KEYWARD_TPM2_ENV. Without the TPM packages
# the tpm2-pkcs11 half is skipped, except under CI=true.
TPM2_UP = d=$$(mktemp -d); trap 'scripts/tpm2-pkcs11.sh down "$$d" >/dev/null; rm -rf "$$d"' EXIT; trap 'exit 130' INT TERM; \
	if scripts/tpm2-pkcs11.sh up "$$d"; then export KEYWARD_TPM2_ENV="$$d/env"; \
	elif [ "$$CI" = true ]; then exit 1; \
	else echo "tpm2-pkcs11 not started: TestConformance runs on SoftHSM2 only"; fi

# Every fuzz target, as package:Target.
FUZZ_TARGETS = ./pkcs11shim:FuzzParseURI ./token:FuzzPINSourceGrammar ./pkcs11shim:FuzzECDSADERToRaw \
               ./token/txformat:FuzzRecognise ./token/txformat:FuzzParsePain001 \
               ./token/smcrypto:FuzzSM2Decrypt ./keysvc/wire:FuzzDecodeVersioned ./keysvc/wire/httpedge:FuzzDecode \
               ./keysvc/api:FuzzDecodeRequest \
               ./keysvc/audit:FuzzUnmarshalRecord ./keysvc/audit:FuzzUnmarshalCheckpoint \
               ./keysvc/secrets:FuzzParse \
               ./cmd/ceremony:FuzzCeremonyConfig ./cmd/ceremony:FuzzParseShare \
               ./cmd/ceremony:FuzzParseApproval ./cmd/ceremony:FuzzBackupFileMAC \
               ./banking:FuzzDecodeRequest ./banking:FuzzCheckOrder

fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t#*:} ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) "$${t%%:*}"; \
	done

# Long fuzz runs, for a workstation.
fuzz:
	$(MAKE) --no-print-directory fuzz-short FUZZTIME=10000000x FUZZMINIMIZE=30s

# Throughput: (1) pool vs raw C_Sign on SoftHSM at 1, 2 and 64 goroutines,
# interleaved in one run, BENCHCOUNT times; (2) the audit store's group
# commit; (3) keysvc's HTTP sign and sign-batch endpoints driven by wrk over
# TLS at 1, 64 and 1000 connections beside the raw C_Sign rate of the same
# token (scripts/bench-keysvc.sh); (4) TPM seal, unseal and sign on swtpm and
# opening the sealed secrets file; (5) three keysvc nodes on etcd beside one
# on bbolt, sign at 64 connections, and the etcd audit append
# (scripts/bench-cluster.sh). Figures: docs/PERFORMANCE.md.
BENCHCOUNT ?= 3
BENCHDUR   ?= 10s
bench: deps
	@scripts/deps.sh bench
	$(GO) test -run '^$$' -bench . -benchtime 3s -count $(BENCHCOUNT) ./softhsm-tests
	$(GO) test -run '^$$' -bench . -benchtime 2s ./keysvc/boltstore
	$(GO) test -run '^$$' -bench . -benchtime 3s ./banking/ledger ./banking/bankaudit
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./token/tpm ./keysvc/secrets ./keysvc/audit
	scripts/bench-keysvc.sh $(BENCHDUR)
	scripts/bench-cluster.sh $(BENCHDUR)

# Customer keys at bank scale: enrol SCALE_CUSTOMERS confirm-required
# wrapped keys (EC P-256 and SM2), check the token's object count does not
# move, and run confirmed signatures among them; then a KEK rotation over
# SCALE_KEK_KEYS wrapped keys (EC P-256, AES-256, SM2, SM4) under client
# load (figures in the log lines; SCALE_TESTS picks the tests).
SCALE_CUSTOMERS ?= 100000
SCALE_KEK_KEYS  ?= 100000
SCALE_TESTS     ?= TestCustomerScale|TestKEKRotation
scale: deps
	KEYWARD_SCALE_CUSTOMERS=$(SCALE_CUSTOMERS) KEYWARD_KEK_KEYS=$(SCALE_KEK_KEYS) $(GO) test -count=1 -v -timeout 120m -run '^($(SCALE_TESTS))$$' ./softhsm-tests 2>&1 | grep -v ' INFO '

# Banking throughput (R-PERF-1): 1,000 concurrent clients making USB-key
# transfers against cmd/banking + cmd/keysvc + SoftHSM, TLS on every hop
# (scripts/bench-banking.sh; figures in docs/PERFORMANCE.md).
BENCHBANKDUR ?= 20s
bench-banking: deps
	scripts/bench-banking.sh $(BENCHBANKDUR)

# The security officers' key-ceremony tool (cmd/ceremony), and keysvc, which
# scripts/ceremony-rehearsal.sh starts on the restored DR token.
ceremony: deps-run
	$(GO) build -o bin/ceremony ./cmd/ceremony
	$(GO) build -o bin/keysvc ./cmd/keysvc

# The USB-key holder's signing command (cmd/kwsign).
kwsign: deps-run
	$(GO) build -o bin/kwsign ./cmd/kwsign

run: deps-run
	$(GO) build -o bin/keysvc ./cmd/keysvc
	./bin/keysvc -dev -data-dir $(DATA_DIR)

# keysvc as a cluster (issue 16): three etcd members (the real etcd server,
# built once into ~/.cache/keyward, mutual TLS, client ports 12379, 12479,
# 12579) and three keysvc nodes on https://127.0.0.1:8451-8453 sharing one
# SoftHSM2 token, everything under $(DATA_DIR)/cluster
# (cmd/internal/runcluster; README, "Running a keysvc cluster"). Ctrl-C
# stops it all.
run-cluster: deps-run
	$(GO) build -o bin/keysvc ./cmd/keysvc
	$(GO) build -o bin/runcluster ./cmd/internal/runcluster
	./bin/runcluster -data-dir $(DATA_DIR) -keysvc bin/keysvc

# The internet-banking API (cmd/banking) in dev mode, on keysvc's dev mode
# (make run, in another terminal): https://127.0.0.1:8445, data under
# $(DATA_DIR)/bank.
run-banking: deps-run
	$(GO) build -o bin/banking ./cmd/banking
	./bin/banking -dev -keysvc-dir $(DATA_DIR) -data-dir $(DATA_DIR)/bank

# banking on PostgreSQL (issue 17), on keysvc's dev mode (make run, in
# another terminal): a fresh primary + synchronous standby + WAL archive
# under $(DATA_DIR)/pg (wiped at each start) and two banking -dev nodes on
# it, https://127.0.0.1:8445 and :8446, sharing $(DATA_DIR)/bank
# (cmd/internal/runbankpg; README, "banking on PostgreSQL (issue 17)").
run-banking-pg: deps-run-pg
	$(GO) build -o bin/banking ./cmd/banking
	$(GO) build -o bin/runbankpg ./cmd/internal/runbankpg
	./bin/runbankpg -data-dir $(DATA_DIR) -banking bin/banking

# The customer and teller client of the banking API (cmd/bankcli).
bankcli: deps-run
	$(GO) build -o bin/bankcli ./cmd/bankcli

clean:
	rm -rf $(DATA_DIR) bin
