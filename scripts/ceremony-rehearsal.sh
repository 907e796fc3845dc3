#!/usr/bin/env bash
# Rehearses the README's key-ceremony walk-through on SoftHSM2, two officers
# and five custodians, in a scratch directory:
#
#   scripts/ceremony-rehearsal.sh [DIR]      (DIR: created if missing; default: a new temporary one)
#
# Every command is the one the README shows, with two differences a rehearsal
# needs: PINs come from files (mode 0600) instead of `prompt`, and --yes
# answers the typed confirmations. Officers' keys, PIN files, tokens, shares
# and transcripts all stay under DIR. Needs bin/ceremony (make ceremony) and
# SoftHSM2 (apt-get install -y softhsm2). Exit 0 only if every step did what
# the README says, including the refusals. The last step starts bin/keysvc
# (make ceremony builds it too) in production mode on the DR token, whose
# service keys came from the backup, and stops it again.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cer=${CEREMONY:-$repo/bin/ceremony}
keysvc=${KEYSVC:-$repo/bin/keysvc}
[ -x "$cer" ] || { echo "rehearsal: $cer missing: run make ceremony" >&2; exit 2; }
[ -x "$keysvc" ] || { echo "rehearsal: $keysvc missing: run make ceremony" >&2; exit 2; }
. "$repo/scripts/rehearsal-lib.sh"
find_softhsm "rehearsal"

dir=${1:-$(mktemp -d /tmp/keyward-ceremony.XXXXXX)}
mkdir -p "$dir" && cd "$dir"
dir=$(pwd)
echo "rehearsal in $dir"
step() { printf '\n### %s\n' "$*"; }
expect_fail() { # expect_fail CODE TEXT cmd...: the command must exit CODE and say TEXT
  local want=$1 text=$2; shift 2
  set +e; out=$("$@" 2>&1); code=$?; set -e
  if [ "$code" -ne "$want" ] || ! grep -qF -- "$text" <<<"$out"; then
    printf 'rehearsal: expected exit %s saying %q from: %s\ngot exit %s:\n%s\n' "$want" "$text" "$*" "$code" "$out" >&2
    exit 1
  fi
  echo "refused as expected (exit $code): $(grep -F -- "$text" <<<"$out" | head -1 | cut -c1-160)"
}

# A private SoftHSM token directory for the rehearsal (a real HSM needs none).
mkdir -p tokens out media/{carol,dave,erin,frank,grace} pins officers var
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" > softhsm2.conf
export SOFTHSM2_CONF=$dir/softhsm2.conf
umask 077
# PIN files stand in for what each officer types at the prompt.
printf 'alice-so-half-1\n' > pins/alice-so; printf 'bob-so-half-2\n' > pins/bob-so
printf 'user-pin-4711\n' > pins/user
printf 'dr-user-pin-0815\n' > pins/dr-user

step "0. each officer makes a personal approval key (on their own machine or USB key)"
"$cer" officer keygen -name "Alice Wong" -out officers/alice.key -pub officers/alice.pub.pem
"$cer" officer keygen -name "Bob Lee" -out officers/bob.key -pub officers/bob.pub.pem

guard=$dir/var/keysvc.db # keysvc's <data_dir>/keysvc.db; token init creates it where keysvc never ran
# approve SUB... FILE: Alice and Bob each approve FILE for ceremony SUB;
# prints the --approval flags.
approve() {
  local file=${*: -1} sub=("${@:1:$#-1}") who
  for who in alice bob; do
    "$cer" approve "${sub[@]}" -f "$file" -key "officers/$who.key" -out "out/$who-$(basename "$file" .yaml).approval" --yes >/dev/null
    printf -- '--approval out/%s-%s.approval ' "$who" "$(basename "$file" .yaml)"
  done
}

step "1. initialise the production token and the DR token, enrolling both officers"
for t in bank-hsm bank-hsm-dr; do
  pin=user; [ $t = bank-hsm-dr ] && pin=dr-user
  { common init-$t; cat <<EOF
token: {label: $t}
$(so_parts)
user_pin: "file:$dir/pins/$pin"
enrol:
  - {name: Alice Wong, public_key: officers/alice.pub.pem}
  - {name: Bob Lee, public_key: officers/bob.pub.pem}
audit_public_key_out: out/ceremony-audit-$t.pem
EOF
  } > init-$t.yaml
  "$cer" token init -f init-$t.yaml --dry-run
  # shellcheck disable=SC2046
  "$cer" token init -f init-$t.yaml --yes $(approve token init init-$t.yaml) > out/init-$t.log
  echo "token $t initialised; transcript key in out/ceremony-audit-$t.pem"
done

step "2. generate keys, keysvc's service keys included (backup-able ones wrap only under the SO's trusted KEK)"
{ common keygen; cat <<EOF
token: {label: bank-hsm, user_pin: "file:$dir/pins/user"}
keys:
  - {label: bank-kek, type: aes-256, usage: [wrap, unwrap], backup: true}
  - {label: receipt-signer, type: ec-p256, usage: [sign], backup: true, public_key_pem: out/receipt-signer.pem}
service_keys: true
EOF
} > keygen.yaml
step "2a. one officer alone is refused before any PIN is read"
"$cer" approve keygen -f keygen.yaml -key officers/alice.key -out out/alice-only.approval --yes >/dev/null
expect_fail 3 "not approved" "$cer" keygen -f keygen.yaml --approval out/alice-only.approval
# shellcheck disable=SC2046
"$cer" keygen -f keygen.yaml $(approve keygen keygen.yaml) > out/keygen.log
for k in keysvc-kek keysvc-sm-kek keysvc-pin-mac keysvc-audit-digest keysvc-audit; do
  grep -qF "generate $k" out/keygen/transcript.md || { echo "rehearsal: keygen made no $k" >&2; exit 1; }
done
echo "keys generated: bank-kek, receipt-signer and keysvc's five service keys"

step "3. back up 3-of-5 (both SO PIN parts: only the SO makes the trusted KEK)"
{ common backup; cat <<EOF
token: {label: bank-hsm, user_pin: "file:$dir/pins/user"}
$(so_parts)
keys: [bank-kek, receipt-signer, keysvc-kek, keysvc-sm-kek, keysvc-pin-mac, keysvc-audit-digest, keysvc-audit]
threshold: 3
custodians:
  - {name: Carol, share_file: media/carol/share-carol.txt}
  - {name: Dave,  share_file: media/dave/share-dave.txt}
  - {name: Erin,  share_file: media/erin/share-erin.txt}
  - {name: Frank, share_file: media/frank/share-frank.txt}
  - {name: Grace, share_file: media/grace/share-grace.txt}
output: out/backup-bank-hsm.json
EOF
} > backup.yaml
# shellcheck disable=SC2046
"$cer" backup -f backup.yaml $(approve backup backup.yaml) > out/backup.log
echo "backup written: out/backup-bank-hsm.json and five share files"

step "4. restore at the DR site with Carol's, Erin's and Grace's shares"
{ common restore-dr; cat <<EOF
token: {label: bank-hsm-dr, user_pin: "file:$dir/pins/dr-user"}
backup_file: out/backup-bank-hsm.json
shares: [media/carol/share-carol.txt, media/erin/share-erin.txt, media/grace/share-grace.txt]
EOF
} > restore.yaml
# shellcheck disable=SC2046
"$cer" restore -f restore.yaml $(approve restore restore.yaml) > out/restore.log
grep -q "held by Carol" out/restore-dr/transcript.md
echo "restored into bank-hsm-dr; the transcript names whose shares were used"

step "5. check the transcripts against the keys the officers kept"
"$cer" transcript verify out/backup/transcript.json -pubkey out/ceremony-audit-bank-hsm.pem
"$cer" transcript verify out/restore-dr/transcript.json -pubkey out/ceremony-audit-bank-hsm-dr.pem
expect_fail 2 "give the signer you expect" "$cer" transcript verify out/backup/transcript.json
expect_fail 4 "different key" "$cer" transcript verify out/backup/transcript.json -pubkey out/ceremony-audit-bank-hsm-dr.pem

step "6. a changed backup file is refused at restore"
sed 's/"label": "receipt-signer"/"label": "payments-root-signer"/' out/backup-bank-hsm.json > out/edited-backup.json
sed -e 's#out/backup-bank-hsm.json#out/edited-backup.json#' -e 's#out/restore-dr#out/restore-edited#' restore.yaml > restore-edited.yaml
# shellcheck disable=SC2046
expect_fail 4 "was changed" "$cer" restore -f restore-edited.yaml $(approve restore restore-edited.yaml)

step "7. keysvc in production mode on the DR token: it starts on the restored service keys"
mkdir -p tls var-dr
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout tls/server-key.pem -out tls/server.pem 2>/dev/null
officer_token=$(openssl rand -hex 16)
port=$(free_port)
cat > keysvc-dr.yaml <<EOF
listen: 127.0.0.1:$port
data_dir: $dir/var-dr
tls: {cert: $dir/tls/server.pem, key: $dir/tls/server-key.pem}
token:
  uri: "pkcs11:token=bank-hsm-dr?module-path=$module&pin-source=file:$dir/pins/dr-user"
clients:
  - {name: officer, admin: true, token_sha256: $(printf %s "$officer_token" | sha256sum | cut -d' ' -f1)}
EOF
"$keysvc" serve -config keysvc-dr.yaml > out/keysvc-dr.log 2>&1 &
ks_pid=$!
ready=""
for _ in $(seq 1 150); do
  if curl -sf --cacert tls/server.pem "https://127.0.0.1:$port/readyz" >/dev/null; then ready=1; break; fi
  kill -0 "$ks_pid" 2>/dev/null || break
  sleep 0.2
done
kill -TERM "$ks_pid" 2>/dev/null || true
wait "$ks_pid" || true
if [ -z "$ready" ] || grep -q "creating service key" out/keysvc-dr.log || ! grep -q "service keys recorded" out/keysvc-dr.log; then
  echo "rehearsal: keysvc did not start on the DR token's restored service keys:" >&2; cat out/keysvc-dr.log >&2; exit 1
fi
echo "keysvc served /readyz on bank-hsm-dr with the restored service keys, and stopped"

echo
echo "rehearsal passed: every step above did what the README says ($dir)"
