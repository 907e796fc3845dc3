#!/usr/bin/env bash
# Installs what Keyward's build and tests need on Debian/Ubuntu when missing:
# a C compiler for cgo (miekg/pkcs11), SoftHSM2 (the PKCS#11 module the tests
# run against) and OpenSC's pkcs11-tool (lists a token's objects), the openssl CLI (tests verify signatures with it), Chromium
# (the confirmation page's browser test drives it headless; under CI=true a
# missing browser fails that test) and fonts-noto-cjk (the Chinese page's glyphs), the TPM stack (swtpm, a software TPM that
# the sealing tests talk to over TCP; tpm2-abrmd, tpm2-tools and tpm2-pkcs11,
# the second PKCS#11 module of the conformance suite, reached over a private
# D-Bus session bus), the OpenSSL headers and Node.js with npm (the SM2
# interop test of token/smcrypto builds a small libcrypto client and runs
# the npm package sm-crypto, which this script installs with npm ci into
# token/smcrypto/testdata/sm-crypto/node_modules), and with the argument
# "bench" wrk (the HTTP load generator of make bench), and Debian's PostgreSQL
# server (initdb, postgres, pg_basebackup, pg_verifybackup, pg_archivecleanup
# under /usr/lib/postgresql/<N>/bin: banking's PostgreSQL tests start their
# own servers with banking/store/pglocal; the system cluster is neither
# created nor started).
#
# Modes (the first argument): none or "test" installs everything above;
# "bench" adds wrk; "run" only what running Keyward needs (make run,
# run-banking, run-cluster, the binaries: the C compiler, SoftHSM2,
# openssl and curl for the walk-throughs) and "run-pg" that plus
# PostgreSQL (make run-banking-pg): no browser, TPM stack, Node.js or
# fonts on a machine that only runs it.
set -euo pipefail

mode="${1:-test}"
case "$mode" in
  test|bench|run|run-pg) ;;
  *) echo "deps: unknown mode $mode (test, bench, run, run-pg)" >&2; exit 2 ;;
esac
need=()
# `deps.sh bench` also wants the load generator.
if [ "$mode" = bench ]; then command -v wrk >/dev/null 2>&1 || need+=(wrk); fi
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)   # the walk-throughs call keysvc with it
tests=""
case "$mode" in test|bench) tests=1 ;; esac
if [ -n "$tests" ]; then
  [ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # The Chinese confirmation page's browser test needs real CJK glyphs (under
  # CI=true a missing Noto CJK font fails it): Debian's Noto Sans/Serif CJK.
  fc-list :lang=zh family 2>/dev/null | grep 'Noto.*CJK' >/dev/null || need+=(fonts-noto-cjk)
fi
softhsm=""
for p in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
  [ -e "$p" ] && softhsm="$p" && break
done
[ -n "$softhsm" ] || need+=(softhsm2)
# pkcs11-tool, with which an operator (and scripts/hsm-set-rehearsal.sh) sees
# which keys a token holds.
[ -z "$tests" ] || command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
# PostgreSQL: the server programs (postgresql-<N>) and the client ones
# (pg_basebackup, pg_verifybackup: postgresql-client-<N>, a dependency).
# KEYWARD_PG_BIN names another installation and skips this.
pg_missing=""
if [ "$mode" != run ] && [ -z "${KEYWARD_PG_BIN:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  need+=(postgresql); pg_missing=1
fi
if [ -n "$tests" ]; then
  command -v swtpm >/dev/null 2>&1 || need+=(swtpm swtpm-tools)
  command -v tpm2_startup >/dev/null 2>&1 || need+=(tpm2-tools)
  { command -v tpm2-abrmd || [ -x /usr/sbin/tpm2-abrmd ]; } >/dev/null 2>&1 || need+=(tpm2-abrmd)
  command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
  command -v tpm2_ptool >/dev/null 2>&1 || need+=(libtpm2-pkcs11-tools)
  ls /usr/lib/*/pkcs11/libtpm2_pkcs11.so* /usr/lib/*/libtpm2_pkcs11.so* >/dev/null 2>&1 || need+=(libtpm2-pkcs11-1)
  # tpm2-pkcs11 reaches tpm2-abrmd through the tabrmd TCTI, a package of its own.
  compgen -G '/usr/lib/*/libtss2-tcti-tabrmd.so.0' >/dev/null || need+=(libtss2-tcti-tabrmd0)
fi

install_packages() {
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "deps: missing ${need[*]} and not root (no sudo): install them with apt-get install -y ${need[*]}" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: missing ${need[*]}; this script knows only apt-get (Debian/Ubuntu)" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}" >&2
  if [ -n "$pg_missing" ]; then
    # Debian's postgresql package creates and starts a "main" cluster on
    # install unless told not to: the tests start their own servers, and a
    # system cluster would only hold port 5432 and memory.
    $sudo mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/keyward-no-main-cluster.conf >/dev/null
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}
[ ${#need[@]} -eq 0 ] || install_packages

[ -n "$tests" ] || exit 0
# The SM2 interop referee, pinned by its package-lock.json.
referee="$(dirname "$0")/../token/smcrypto/testdata/sm-crypto"
if [ ! -e "$referee/node_modules/sm-crypto/package.json" ]; then
  echo "deps: installing sm-crypto (npm) for the SM2 interop test" >&2
  if ! npm ci --prefix "$referee" --no-audit --no-fund --loglevel=error >/dev/null; then
    [ "${CI:-}" != true ] || exit 1
    echo "deps: npm ci of sm-crypto failed: the SM2 interop test against sm-crypto will skip" >&2
  fi
fi
