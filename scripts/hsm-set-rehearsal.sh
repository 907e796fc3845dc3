#!/usr/bin/env bash
# Rehearses the README's walk-through "Several HSMs" on SoftHSM2 standing in
# for three HSMs, two officers and five custodians, in a scratch directory:
#
#   scripts/hsm-set-rehearsal.sh [DIR]      (DIR: created if missing; default: a new temporary one)
#
# It runs the same ceremonies, with the same files, and the same keysvc
# calls as the walk-through, PINs from 0600 files and --yes answering the
# typed confirmations as the README's drill does with YES=--yes. Steps:
# init bank-hsm-a and bank-hsm-b; keysvc's service keys by keygen's
# service_keys preset on A, backed up 3-of-5 (the KEKs in a file of their
# own) and restored into B; the replication key generated on A and installed
# on B from three shares with its check value; keysvc with `tokens:` on
# both; an hsm key created through keysvc's API, found on both tokens with
# pkcs11-tool and signing; B lost (its token directory moved away: /readyz,
# /metrics, the log) and coming back; a new HSM bank-hsm-c joining (init,
# restore, install, added to tokens:; keysvc copies the hsm key into it at
# start and reports no key missing); C leaving (removed from tokens:,
# zeroized with its unbacked keys acknowledged); the KEK rotation (epoch 2's
# KEKs by keygen, backup, restore into B, ceremony kek-rotate; epoch 1's
# KEKs gone from both tokens; their backup shredded). HSM_SET_KEK=0 skips
# the rotation. Needs bin/ceremony and bin/keysvc (make ceremony),
# SoftHSM2, pkcs11-tool (opensc), openssl and curl (scripts/deps.sh
# installs them). Exit 0 only if every step did what the README says.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cer=${CEREMONY:-$repo/bin/ceremony}
keysvc=${KEYSVC:-$repo/bin/keysvc}
[ -x "$cer" ] || { echo "hsm-set rehearsal: $cer missing: run make ceremony" >&2; exit 2; }
[ -x "$keysvc" ] || { echo "hsm-set rehearsal: $keysvc missing: run make ceremony" >&2; exit 2; }
command -v pkcs11-tool >/dev/null || { echo "hsm-set rehearsal: pkcs11-tool missing: apt-get install -y opensc (scripts/deps.sh)" >&2; exit 2; }
. "$repo/scripts/rehearsal-lib.sh"
find_softhsm "hsm-set rehearsal"

dir=${1:-$(mktemp -d /tmp/keyward-hsm-set.XXXXXX)}
mkdir -p "$dir" && cd "$dir"
dir=$(pwd)
echo "hsm-set rehearsal in $dir"
t0=$SECONDS
step() { printf '\n### %s (%ds)\n' "$*" $((SECONDS - t0)); }
ks_log=""
fail() { echo "hsm-set rehearsal: $*" >&2; [ -n "$ks_log" ] && { echo "--- $ks_log:" >&2; tail -40 "$ks_log" >&2; }; exit 1; }

# A private SoftHSM token directory (a real HSM needs none).
mkdir -p tokens out media/{carol,dave,erin,frank,grace} pins officers var tls
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" > softhsm2.conf
export SOFTHSM2_CONF=$dir/softhsm2.conf
umask 077
printf 'alice-so-half-1\n' > pins/alice-so; printf 'bob-so-half-2\n' > pins/bob-so
for t in a b c; do printf 'user-pin-hsm-%s-%s\n' $t "$(openssl rand -hex 4)" > pins/hsm-$t; done

ks_pid=""
cleanup() { [ -n "$ks_pid" ] && kill -TERM "$ks_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

step "0. each officer makes a personal approval key"
"$cer" officer keygen -name "Alice Wong" -out officers/alice.key -pub officers/alice.pub.pem >/dev/null
"$cer" officer keygen -name "Bob Lee" -out officers/bob.key -pub officers/bob.pub.pem >/dev/null

guard=$dir/var/keysvc.db # keysvc's <data_dir>/keysvc.db: every ceremony counts its logins there (keysvc stopped)
# run SUB... FILE: Alice and Bob approve FILE for ceremony SUB, then it runs
# with both approvals and --yes; output in out/<file>.log.
run() {
  local file=${*: -1} sub=("${@:1:$#-1}") who b
  b=$(basename "$file" .yaml)
  local flags=()
  for who in alice bob; do
    "$cer" approve "${sub[@]}" -f "$file" -key "officers/$who.key" -out "out/$who-$b.approval" --yes >/dev/null
    flags+=(--approval "out/$who-$b.approval")
  done
  "$cer" "${sub[@]}" -f "$file" "${flags[@]}" --yes > "out/$b.log" 2>&1 || { cat "out/$b.log" >&2; fail "ceremony ${sub[*]} -f $file failed"; }
}

init_token() { # init_token a|b|c
  { common init-bank-hsm-$1; cat <<EOF
token: {label: bank-hsm-$1}
$(so_parts)
user_pin: "file:$dir/pins/hsm-$1"
enrol:
  - {name: Alice Wong, public_key: officers/alice.pub.pem}
  - {name: Bob Lee, public_key: officers/bob.pub.pem}
audit_public_key_out: out/ceremony-audit-bank-hsm-$1.pem
EOF
  } > init-bank-hsm-$1.yaml
  run token init init-bank-hsm-$1.yaml
}
restore_backup() { # restore_backup LETTER NAME SHARE-PREFIX: out/backup-NAME.json into bank-hsm-LETTER, shares of Carol, Erin, Grace
  { common restore-$2-bank-hsm-$1; cat <<EOF
token: {label: bank-hsm-$1, user_pin: "file:$dir/pins/hsm-$1"}
backup_file: out/backup-$2.json
shares: [media/carol/$3-carol.txt, media/erin/$3-erin.txt, media/grace/$3-grace.txt]
EOF
  } > restore-$2-bank-hsm-$1.yaml
  run restore restore-$2-bank-hsm-$1.yaml
}
restore_service_keys() { # restore_service_keys b|c: both service-key backups
  restore_backup "$1" service-keks keks
  restore_backup "$1" service-keys service-keys
}
install_replication_key() { # install_replication_key b|c
  { common replication-key-bank-hsm-$1; cat <<EOF
mode: install
token: {label: bank-hsm-$1, user_pin: "file:$dir/pins/hsm-$1"}
$(so_parts)
shares: [media/dave/replication-dave.txt, media/frank/replication-frank.txt, media/grace/replication-grace.txt]
check_value: $check_value
EOF
  } > replication-key-bank-hsm-$1.yaml
  run replication-key replication-key-bank-hsm-$1.yaml
  grep -qF "check value: $check_value" out/replication-key-bank-hsm-$1.log || fail "install on bank-hsm-$1 printed another check value"
}

step "1. initialise two HSMs, bank-hsm-a and bank-hsm-b, each with its own user PIN"
init_token a
init_token b

step "2. generate keysvc's service keys in bank-hsm-a (keygen's service_keys preset)"
{ common keygen-service-keys; cat <<EOF
token: {label: bank-hsm-a, user_pin: "file:$dir/pins/hsm-a"}
service_keys: true
EOF
} > keygen-service-keys.yaml
run keygen keygen-service-keys.yaml
for k in keysvc-kek keysvc-sm-kek keysvc-pin-mac keysvc-audit-digest keysvc-audit; do
  grep -qF "generate $k" out/keygen-service-keys/transcript.md || fail "keygen made no $k"
done

step "3. back the service keys up 3-of-5: the KEKs in a file of their own, the other three in another"
backup() { # backup NAME SHARE-PREFIX KEY...: bank-hsm-a's KEYs 3-of-5 to out/backup-NAME.json
  local name=$1 pre=$2; shift 2
  { common backup-$name; so_parts; cat <<EOF
token: {label: bank-hsm-a, user_pin: "file:$dir/pins/hsm-a"}
keys: [$(IFS=,; echo "$*" | sed 's/,/, /g')]
threshold: 3
custodians:
  - {name: Carol, share_file: media/carol/$pre-carol.txt}
  - {name: Dave,  share_file: media/dave/$pre-dave.txt}
  - {name: Erin,  share_file: media/erin/$pre-erin.txt}
  - {name: Frank, share_file: media/frank/$pre-frank.txt}
  - {name: Grace, share_file: media/grace/$pre-grace.txt}
output: out/backup-$name.json
EOF
  } > backup-$name.yaml
  run backup backup-$name.yaml
}
backup service-keks keks keysvc-kek keysvc-sm-kek
backup service-keys service-keys keysvc-pin-mac keysvc-audit-digest keysvc-audit

step "4. restore them into bank-hsm-b with Carol's, Erin's and Grace's shares"
restore_service_keys b

step "5. generate the replication key on bank-hsm-a; install it on bank-hsm-b from three shares"
{ common replication-key-bank-hsm-a; so_parts; cat <<EOF
mode: generate
token: {label: bank-hsm-a, user_pin: "file:$dir/pins/hsm-a"}
threshold: 3
custodians:
  - {name: Carol, share_file: media/carol/replication-carol.txt}
  - {name: Dave,  share_file: media/dave/replication-dave.txt}
  - {name: Erin,  share_file: media/erin/replication-erin.txt}
  - {name: Frank, share_file: media/frank/replication-frank.txt}
  - {name: Grace, share_file: media/grace/replication-grace.txt}
EOF
} > replication-key-bank-hsm-a.yaml
run replication-key replication-key-bank-hsm-a.yaml
check_value=$(sed -n 's/^check value: \([0-9a-f]\{80\}\)$/\1/p' out/replication-key-bank-hsm-a.log)
[ -n "$check_value" ] || fail "replication-key generate printed no check value"
echo "replication key check value: $check_value"
install_replication_key b

step "6. keysvc with tokens: on both HSMs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout tls/server-key.pem -out tls/server.pem 2>/dev/null
officer_token=$(openssl rand -hex 16)
printf '%s' "$officer_token" > pins/officer.token
port=$(free_port); mport=$((port + 1))
write_config() { # write_config MEMBER...: keysvc.yaml naming these tokens
  {
    cat <<EOF
listen: 127.0.0.1:$port
data_dir: $dir/var
tls: {cert: $dir/tls/server.pem, key: $dir/tls/server-key.pem}
metrics: {listen: 127.0.0.1:$mport}
tokens:
EOF
    for m in "$@"; do
      echo "  - {name: hsm-$m, uri: \"pkcs11:token=bank-hsm-$m?module-path=$module&pin-source=file:$dir/pins/hsm-$m\"}"
    done
    cat <<EOF
probe_interval: 1s
clients:
  - {name: officer, admin: true, token_sha256: $(printf %s "$officer_token" | sha256sum | cut -d' ' -f1)}
EOF
  } > keysvc.yaml
}
kw() { curl -sS --cacert tls/server.pem -H "Authorization: Bearer $officer_token" -H "Content-Type: application/json" "$@"; }
starts=0
start_keysvc() { # each start logs to its own out/keysvc-<n>.log
  starts=$((starts + 1)); ks_log=out/keysvc-$starts.log
  "$keysvc" serve -config keysvc.yaml > "$ks_log" 2>&1 &
  ks_pid=$!
  for _ in $(seq 1 150); do
    if curl -sf --cacert tls/server.pem "https://127.0.0.1:$port/readyz" >/dev/null; then return 0; fi
    kill -0 "$ks_pid" 2>/dev/null || fail "keysvc exited at start"
    sleep 0.2
  done
  fail "keysvc not ready within 30 s"
}
stop_keysvc() { kill -TERM "$ks_pid"; wait "$ks_pid" || true; ks_pid=""; }
# member_state NAME: the member's line in /metrics (1 up, 0 down).
member_up() { curl -s "http://127.0.0.1:$mport/metrics" | sed -n "s/^keyward_token_member_up{token=\"$1\"} //p"; }
wait_member() { # wait_member NAME 0|1 SECONDS
  for _ in $(seq 1 $(($3 * 5))); do
    [ "$(member_up "$1")" = "$2" ] && return 0
    sleep 0.2
  done
  fail "member $1 not at keyward_token_member_up $2 within $3 s (now: $(member_up "$1"))"
}
write_config a b
start_keysvc
kw "https://127.0.0.1:$port/readyz" > out/readyz-ab.json; echo "readyz: $(cat out/readyz-ab.json)"
for m in hsm-a hsm-b; do [ "$(member_up $m)" = 1 ] || fail "/metrics: $m is not up"; done
grep -q "creating service key" "$ks_log" && fail "keysvc made service keys itself"

step "7. an hsm key through keysvc's API: on both tokens, and it signs"
kw -X POST "https://127.0.0.1:$port/v1/keys" -d '{"name":"pay-signer","purpose":"sign","algorithm":"ec-p256","protection":"hsm","policy":{"grants":[{"client":"officer","ops":["sign","verify","public"]}]}}' > out/create.json
grep -q '"pay-signer"' out/create.json || fail "create pay-signer: $(cat out/create.json)"
# on_token LETTER LABEL: is there a private key LABEL on bank-hsm-LETTER?
# pkcs11-tool logs in with the user PIN from an environment variable
# (--pin env:NAME), never from its argv. No label here is a prefix of
# another, so --token-label picks exactly one token.
on_token() {
  KW_PIN=$(cat "pins/hsm-$1") pkcs11-tool --module "$module" --token-label "bank-hsm-$1" --login --pin env:KW_PIN -O 2>/dev/null |
    grep -A1 '^Private Key Object' | grep -qxF "  label:      $2"
}
# has_object LETTER LABEL: any object LABEL on bank-hsm-LETTER (keys, secret keys included)?
has_object() {
  KW_PIN=$(cat "pins/hsm-$1") pkcs11-tool --module "$module" --token-label "bank-hsm-$1" --login --pin env:KW_PIN -O 2>/dev/null |
    grep -qxF "  label:      $2"
}
for t in a b; do
  on_token $t kw/pay-signer/v1 || fail "kw/pay-signer/v1 is not on bank-hsm-$t"
done
echo "kw/pay-signer/v1 is on bank-hsm-a and bank-hsm-b"
sign() { kw -X POST "https://127.0.0.1:$port/v1/keys/pay-signer/sign" -d '{"message":"aGVsbG8="}' | grep -o 'kw:v[0-9]*:[^"]*'; }
sig=$(sign) || fail "pay-signer does not sign"
kw -X POST "https://127.0.0.1:$port/v1/keys/pay-signer/verify" -d '{"message":"aGVsbG8=","signature":"'"$sig"'"}' | grep -q '"valid":true' || fail "signature does not verify"

step "8. losing bank-hsm-b (its token directory moved away) and its return"
bdir=$(grep -l 'bank-hsm-b' tokens/*/token.object | head -1 | xargs dirname) || true
[ -n "$bdir" ] || fail "cannot find bank-hsm-b's SoftHSM directory"
mv "$bdir" lost-token
for _ in 1 2 3 4 5; do sign >/dev/null || fail "a signature failed while bank-hsm-b was away"; done
wait_member hsm-b 0 15
kw "https://127.0.0.1:$port/readyz" > out/readyz-b-down.json; echo "readyz with hsm-b away: $(cat out/readyz-b-down.json)"
grep -q '"name":"hsm-b"[^}]*"state":"down"' out/readyz-b-down.json || fail "/readyz does not show hsm-b down"
curl -s "http://127.0.0.1:$mport/metrics" | grep '^keyward_token_member' > out/metrics-b-down.txt || true
echo "/metrics with hsm-b away:"; cat out/metrics-b-down.txt
sign >/dev/null || fail "no signature with bank-hsm-b down"
mv lost-token "$bdir"
wait_member hsm-b 1 30
grep -q "member UP again" "$ks_log" || fail "keysvc did not log hsm-b's re-admission"
echo "hsm-b re-admitted: $(grep "member UP again" "$ks_log" | tail -1 | cut -c1-220)"
stop_keysvc

step "9. a new HSM joins: bank-hsm-c initialised, service keys restored, replication key installed, added to tokens:"
init_token c
restore_service_keys c
install_replication_key c
on_token c kw/pay-signer/v1 && fail "bank-hsm-c holds kw/pay-signer/v1 before keysvc copied it"
write_config a b c
start_keysvc
grep "brought up to date at start" "$ks_log" | grep -q 'member=hsm-c.*keys_copied=1' || fail "keysvc did not log copying the hsm key into hsm-c at start"
echo "keysvc: $(grep "brought up to date at start" "$ks_log" | cut -c1-220)"
on_token c kw/pay-signer/v1 || fail "kw/pay-signer/v1 was not copied into bank-hsm-c"
# A joining token lacks the hsm keys until keysvc copies them: that is no lost key.
grep -q "token object is missing" "$ks_log" && fail "keysvc reported an hsm key lost while copying it into the joining token"
curl -s "http://127.0.0.1:$mport/metrics" | grep -qx 'keyward_token_keys_missing 0' || fail "/metrics: keyward_token_keys_missing is not 0 after hsm-c joined"
[ "$(member_up hsm-c)" = 1 ] || fail "/metrics: hsm-c is not up"
sign >/dev/null || fail "pay-signer does not sign on three tokens"
stop_keysvc

step "10. bank-hsm-c leaves: removed from tokens:, then zeroized"
write_config a b
{ common zeroize-bank-hsm-c | sed "s#^transcript: .*#transcript: {dir: out/zeroize-bank-hsm-c, signer: {label: bank-hsm-a, user_pin: \"file:$dir/pins/hsm-a\"}}#"; so_parts; cat <<EOF
token: {label: bank-hsm-c, user_pin: "file:$dir/pins/hsm-c"}
acknowledge_unbacked: [ceremony-audit, keysvc-kek, keysvc-sm-kek, keysvc-pin-mac, keysvc-audit-digest, keysvc-audit, keysvc-replication, kw/pay-signer/v1]
confirmation: ZEROIZE bank-hsm-c
EOF
} > zeroize-bank-hsm-c.yaml
run zeroize zeroize-bank-hsm-c.yaml
on_token c kw/pay-signer/v1 2>/dev/null && fail "bank-hsm-c still holds kw/pay-signer/v1 after zeroize"
start_keysvc
sign >/dev/null || fail "pay-signer does not sign after hsm-c left"
[ -z "$(member_up hsm-c)" ] || fail "/metrics still lists hsm-c"

# The KEK rotation (HSM_SET_KEK=0 skips it).
if [ "${HSM_SET_KEK:-1}" = 1 ]; then
step "11. KEK rotation: epoch 2's KEKs by keygen, backed up, restored into bank-hsm-b; kek-rotate"
kw -X POST "https://127.0.0.1:$port/v1/keys" -d '{"name":"cloud-1","purpose":"sign","algorithm":"ec-p256","protection":"wrapped","policy":{"grants":[{"client":"officer","ops":["sign","verify","public"]}]}}' > out/create-wrapped.json
grep -q '"cloud-1"' out/create-wrapped.json || fail "create cloud-1: $(cat out/create-wrapped.json)"
stop_keysvc
{ common keygen-kek-e2; cat <<EOF
token: {label: bank-hsm-a, user_pin: "file:$dir/pins/hsm-a"}
keys:
  - {label: keysvc-kek-e2, type: aes-256, usage: [wrap, unwrap], backup: true, destroyable: true}
  - {label: keysvc-sm-kek-e2, type: aes-256, usage: [encrypt, decrypt], backup: true, destroyable: true}
EOF
} > keygen-kek-e2.yaml
run keygen keygen-kek-e2.yaml
backup kek-e2 kek-e2 keysvc-kek-e2 keysvc-sm-kek-e2
restore_backup b kek-e2 kek-e2
start_keysvc
# kek-rotate runs from the officers' workstation, beside keysvc: its own PIN
# guard file and its own token (ceremony-officers) to sign the transcript.
printf 'officers-token-pin-%s\n' "$(openssl rand -hex 4)" > pins/officers
{ sed "s#^pin_guard: .*#pin_guard: $dir/officers/workstation-guard.db#" <(common init-ceremony-officers); cat <<EOF
token: {label: ceremony-officers}
$(so_parts)
user_pin: "file:$dir/pins/officers"
enrol:
  - {name: Alice Wong, public_key: officers/alice.pub.pem}
  - {name: Bob Lee, public_key: officers/bob.pub.pem}
audit_public_key_out: out/ceremony-audit-ceremony-officers.pem
EOF
} > init-ceremony-officers.yaml
run token init init-ceremony-officers.yaml
cat > kek-rotate-e2.yaml <<EOF
module: $module
officers: [Alice Wong, Bob Lee]
transcript: {dir: out/kek-rotate-e2, signer: {label: ceremony-officers, user_pin: "file:$dir/pins/officers"}}
pin_guard: $dir/officers/workstation-guard.db
keysvc: {url: "https://127.0.0.1:$port", ca_file: tls/server.pem, bearer_token_file: pins/officer.token}
from_epoch: 1
poll_interval: 500ms
EOF
timeout 60 "$cer" kek-rotate -f kek-rotate-e2.yaml --yes > out/kek-rotate-e2.log 2>&1 || { cat out/kek-rotate-e2.log >&2; fail "kek-rotate failed"; }
cat out/kek-rotate-e2.log
grep -q "epoch 2 in service; destroyed keysvc-kek, keysvc-sm-kek" out/kek-rotate-e2.log || fail "kek-rotate did not report epoch 2 in service with epoch 1's KEKs destroyed"
for t in a b; do
  has_object $t keysvc-kek && fail "keysvc-kek is still on bank-hsm-$t after the rotation"
  has_object $t keysvc-kek-e2 || fail "keysvc-kek-e2 is not on bank-hsm-$t"
done
kw -X POST "https://127.0.0.1:$port/v1/keys/cloud-1/sign" -d '{"message":"aGVsbG8="}' | grep -q 'kw:v1:' || fail "cloud-1 (wrapped, re-wrapped to epoch 2) does not sign"
echo "epoch 1's KEKs are gone from bank-hsm-a and bank-hsm-b; cloud-1 signs under epoch 2"
# The officers' last step: epoch 1's KEK backup and its shares go.
shred -u out/backup-service-keks.json media/*/keks-*.txt
ls media/*/keks-*.txt out/backup-service-keks.json 2>/dev/null && fail "epoch 1's KEK backup or a share is still there"
echo "epoch 1's KEK backup file and its five shares destroyed"
fi
stop_keysvc

echo
echo "hsm-set rehearsal passed in $((SECONDS - t0)) s: every step above did what the README says ($dir)"
