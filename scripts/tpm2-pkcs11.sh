#!/usr/bin/env bash
# tpm2-pkcs11 over a software TPM, for the token conformance suite
# (softhsm-tests/conformance_test.go), which runs against SoftHSM2 and this.
#
#   scripts/tpm2-pkcs11.sh up DIR     start everything, write DIR/env
#   scripts/tpm2-pkcs11.sh down DIR   stop what `up DIR` started
#
# `up` starts swtpm (a TPM 2.0 simulator) on two free TCP ports, a private
# D-Bus session bus (dbus-daemon), and tpm2-abrmd on that bus as the TPM's
# resource manager (tpm2-pkcs11 cannot use swtpm directly: without a
# resource manager the TPM runs out of object slots), then initialises a
# tpm2-pkcs11 store in DIR/store and creates one token. DIR/env gets
# KEY=VALUE lines (no spaces, so `set -a; . DIR/env` works): the module path,
# the variables tpm2-pkcs11 and tpm2-tools read (TPM2_PKCS11_TCTI,
# TPM2_PKCS11_STORE, TPM2TOOLS_TCTI, DBUS_SESSION_BUS_ADDRESS), the token
# label, the test PINs and the pids. The test PINs are throwaway: taken from
# KEYWARD_TPM2_SO_PIN / KEYWARD_TPM2_USER_PIN when set, random otherwise;
# they reach tpm2_ptool's argv (a short-lived process: it has no other way)
# and DIR/env (mode 0600), never a long-lived process's argv.
#
# Both commands are idempotent: `up` on a running DIR checks it and leaves it
# alone, `down` on a stopped one does nothing. Runs as root (CI) and not.
set -euo pipefail

label=${KEYWARD_TPM2_LABEL:-kw-tpm2}

die() { echo "tpm2-pkcs11.sh: $*" >&2; exit 1; }

usage() { die "usage: $0 up|down DIR"; }

# need CMD PACKAGE: fail naming the Debian package that provides CMD.
need() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ||
    die "$1 not found: install the Debian package $2 (apt-get install -y $2; scripts/deps.sh does it)"
}

find_module() {
  local p
  for p in /usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so /usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so \
           /usr/lib/*/pkcs11/libtpm2_pkcs11.so /usr/lib/*/libtpm2_pkcs11.so.1 /usr/local/lib/pkcs11/libtpm2_pkcs11.so; do
    [ -e "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

check_deps() {
  need swtpm swtpm
  need tpm2-abrmd tpm2-abrmd
  need dbus-daemon dbus-daemon
  need tpm2_ptool libtpm2-pkcs11-tools
  need tpm2_getcap tpm2-tools
  need tpm2_dictionarylockout tpm2-tools
  module=$(find_module) || die "libtpm2_pkcs11.so not found: install the Debian package libtpm2-pkcs11-1"
  # The client side of tabrmd is its own package; without it every TCTI
  # load fails with "Could not load tcti".
  compgen -G '/usr/lib/*/libtss2-tcti-tabrmd.so.0' >/dev/null || compgen -G '/usr/local/lib/libtss2-tcti-tabrmd.so.0' >/dev/null ||
    die "libtss2-tcti-tabrmd.so.0 not found: install the Debian package libtss2-tcti-tabrmd0"
}

# alive PID NAME: PID runs a program whose command line contains NAME (a
# recycled pid must never be killed).
alive() {
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

# exited PID: PID has ended: gone, or a zombie (state Z or X in
# /proc/PID/stat). Not `! alive PID NAME`: while `prog &` execs, reading
# /proc/PID/cmdline fails for a moment ("tr: read error: No such
# process"), so judging a just-started process by its name called a
# healthy start dead: CI failed about one run in thirty with "tpm2-abrmd
# exited" and an empty abrmd.log, while that tpm2-abrmd ran on (seen
# 2 of 60 starts here). A read that fails while /proc/PID exists is such
# a moment, not an exit.
exited() {
  local st
  [ -d "/proc/$1" ] || return 0
  st=$(sed -n 's/^.*) \([A-Za-z]\) .*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$st" = Z ] || [ "$st" = X ]
}

envval() { [ -r "$dir/env" ] && sed -n "s/^$1=//p" "$dir/env" | head -n1 || true; }

# port_free P: nothing listens on 127.0.0.1:P.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

tools_env() {
  export DBUS_SESSION_BUS_ADDRESS=$bus TPM2TOOLS_TCTI=tabrmd:bus_type=session TSS2_LOG=all+NONE
}

start_swtpm() {
  local try port
  mkdir -p "$dir/tpmstate"
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_free "$port" && port_free $((port + 1)) || continue
    setsid swtpm socket --tpm2 --tpmstate dir="$dir/tpmstate" \
      --server type=tcp,port="$port",bindaddr=127.0.0.1 --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
      --flags not-need-init,startup-clear --log file="$dir/swtpm.log" </dev/null >>"$dir/swtpm.log" 2>&1 &
    swtpm_pid=$!
    for _ in $(seq 50); do
      exited "$swtpm_pid" && break
      port_free "$port" || { swtpm_port=$port; return 0; }
      sleep 0.1
    done
    kill "$swtpm_pid" 2>/dev/null || true # lost a race for the port: try another
  done
  die "swtpm did not start (see $dir/swtpm.log)"
}

start_dbus() {
  # A private session bus: nothing else talks to it, and tpm2-abrmd needs no
  # system bus policy (its system.d config) on it.
  local out
  out=$(dbus-daemon --session --fork --nopidfile --print-address=1 --print-pid=1) ||
    die "dbus-daemon --session failed"
  bus=$(sed -n 1p <<<"$out")
  dbus_pid=$(sed -n 2p <<<"$out")
  [ -n "$bus" ] && alive "$dbus_pid" dbus-daemon || die "dbus-daemon did not report its address and pid"
}

start_abrmd() {
  local root=()
  [ "$(id -u)" -eq 0 ] && root=(--allow-root) # it refuses root without this
  DBUS_SESSION_BUS_ADDRESS=$bus setsid "$(command -v tpm2-abrmd || echo /usr/sbin/tpm2-abrmd)" --session "${root[@]}" \
    --tcti="swtpm:host=127.0.0.1,port=$swtpm_port" </dev/null >>"$dir/abrmd.log" 2>&1 &
  abrmd_pid=$!
  tools_env
  for _ in $(seq 100); do
    exited "$abrmd_pid" && die "tpm2-abrmd exited (see $dir/abrmd.log)"
    tpm2_getcap properties-fixed >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "tpm2-abrmd not ready after 10 s (see $dir/abrmd.log)"
}

randpin() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# running: DIR/env exists, every pid in it is alive and the TPM answers.
running() {
  [ -s "$dir/env" ] || return 1
  alive "$(envval KEYWARD_TPM2_SWTPM_PID)" swtpm && alive "$(envval KEYWARD_TPM2_DBUS_PID)" dbus-daemon &&
    alive "$(envval KEYWARD_TPM2_ABRMD_PID)" tpm2-abrmd || return 1
  bus=$(envval DBUS_SESSION_BUS_ADDRESS)
  (tools_env; tpm2_getcap properties-fixed >/dev/null 2>&1)
}

up() {
  check_deps
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if running; then
    echo "tpm2-pkcs11.sh: already up in $dir"
    return 0
  fi
  down >/dev/null # a half-started or dead earlier run
  local start=$SECONDS
  swtpm_pid="" dbus_pid="" abrmd_pid=""
  # Partial starts are recorded as they happen, so `down` can clean them up.
  start_swtpm
  echo "$swtpm_pid" >"$dir/pids"
  start_dbus
  echo "$dbus_pid" >>"$dir/pids"
  start_abrmd
  echo "$abrmd_pid" >>"$dir/pids"

  local so=${KEYWARD_TPM2_SO_PIN:-$(randpin)} user=${KEYWARD_TPM2_USER_PIN:-$(randpin)}
  rm -rf "$dir/store"
  mkdir -m 700 "$dir/store"
  tpm2_ptool init --path "$dir/store" >"$dir/ptool.log" 2>&1 || die "tpm2_ptool init failed (see $dir/ptool.log)"
  tpm2_ptool addtoken --pid=1 --label="$label" --sopin="$so" --userpin="$user" --path "$dir/store" >>"$dir/ptool.log" 2>&1 ||
    die "tpm2_ptool addtoken failed (see $dir/ptool.log)"

  local tmp
  tmp=$(mktemp "$dir/env.XXXXXX") # mktemp makes it 0600: it holds the test PINs
  cat >"$tmp" <<EOF
KEYWARD_TPM2_MODULE=$module
TPM2_PKCS11_TCTI=tabrmd:bus_type=session
TPM2_PKCS11_STORE=$dir/store
TPM2_PKCS11_LOG_LEVEL=0
TPM2TOOLS_TCTI=tabrmd:bus_type=session
TSS2_LOG=all+NONE
DBUS_SESSION_BUS_ADDRESS=$bus
KEYWARD_TPM2_TOKEN_LABEL=$label
KEYWARD_TPM2_SO_PIN=$so
KEYWARD_TPM2_USER_PIN=$user
KEYWARD_TPM2_SWTPM_PORT=$swtpm_port
KEYWARD_TPM2_SWTPM_PID=$swtpm_pid
KEYWARD_TPM2_DBUS_PID=$dbus_pid
KEYWARD_TPM2_ABRMD_PID=$abrmd_pid
EOF
  mv "$tmp" "$dir/env"
  echo "tpm2-pkcs11.sh: up in $((SECONDS - start)) s: token $label, swtpm 127.0.0.1:$swtpm_port, env in $dir/env"
}

down() {
  [ -d "$dir" ] || return 0
  local pid name
  # Read both records: pids (written as things start) and env (complete).
  local pids
  pids=$(cat "$dir/pids" 2>/dev/null || true; envval KEYWARD_TPM2_SWTPM_PID; envval KEYWARD_TPM2_DBUS_PID; envval KEYWARD_TPM2_ABRMD_PID)
  # The broker first, then its bus, then the TPM it talks to.
  for name in tpm2-abrmd dbus-daemon swtpm; do
    for pid in $pids; do
      if alive "$pid" "$name"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do alive "$pid" "$name" || break; sleep 0.1; done
        alive "$pid" "$name" && kill -9 "$pid" 2>/dev/null || true
      fi
    done
  done
  rm -f "$dir/env" "$dir/pids"
  echo "tpm2-pkcs11.sh: down in $dir"
}

[ $# -eq 2 ] || usage
dir=$2
case $1 in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
