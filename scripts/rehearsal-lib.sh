# Shared by scripts/ceremony-rehearsal.sh and scripts/hsm-set-rehearsal.sh
# (sourced, not run): the SoftHSM2 module, the lines every ceremony file of a
# rehearsal starts with, the officers' SO PIN parts, and a free port for
# keysvc. The functions read the sourcing script's $module, $guard and $dir
# when they are called.

# find_softhsm NAME: sets module to SoftHSM2's PKCS#11 library, or exits 2
# naming the package (NAME prefixes the message).
find_softhsm() {
  local p
  module=""
  for p in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -e "$p" ] && module=$p && break
  done
  [ -n "$module" ] || { echo "$1: SoftHSM2 not found: apt-get install -y softhsm2" >&2; exit 2; }
}

common() { # common TRANSCRIPT-DIR
  cat <<YAML
module: $module
officers: [Alice Wong, Bob Lee]
transcript: {dir: out/$1}
pin_guard: $guard
YAML
}

so_parts() {
  cat <<YAML
so_pin:
  - {officer: Alice Wong, pin: "file:$dir/pins/alice-so"}
  - {officer: Bob Lee, pin: "file:$dir/pins/bob-so"}
YAML
}

# free_port: a port for keysvc's listener (and the next one, for metrics)
# that nothing uses, chosen below the kernel's ephemeral range: ports there
# are handed to port-0 listeners and to outgoing connections (other tests'
# clients on the same machine), so a fixed pick in it can collide.
free_port() {
  local lo p
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in $(seq 50); do
    p=$((10000 + RANDOM % (lo - 10002)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port below $lo" >&2
  return 1
}
