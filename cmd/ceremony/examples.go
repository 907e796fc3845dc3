package main

// Example ceremony files printed by each subcommand's --help. Relative
// paths are resolved against the YAML file's directory.

const exampleInit = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/init-bank-hsm
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's <data_dir>/keysvc.db, where keysvc counts PIN attempts; created here if keysvc never ran
token:
  label: bank-hsm
so_pin:                      # two parts: the SO PIN is part 1 then part 2 (dual control for unlock)
  - {officer: Alice Wong, pin: "prompt"}
  - {officer: Bob Lee, pin: "prompt"}
user_pin: prompt             # or file:/run/ceremony/user.pin, env:USER_PIN
enrol:                       # the officers' roster, written into the token as the SO (trusted public keys)
  - {name: Alice Wong, public_key: officers/alice.pub.pem}   # from: ceremony officer keygen -name "Alice Wong" -out alice.key -pub alice.pub.pem
  - {name: Bob Lee, public_key: officers/bob.pub.pem}
# Every officer enrolled approves this file with the key being enrolled:
#   ceremony approve token init -f init.yaml -key alice.key -out alice.approval   (Bob likewise)
#   ceremony token init -f init.yaml --approval alice.approval --approval bob.approval
# The ceremony-audit public key, for every officer's own copy: pin transcripts with
# ceremony transcript verify transcript.json -pubkey ceremony-audit.pem
audit_public_key_out: out/init-bank-hsm/ceremony-audit.pem
`

const exampleKeygen = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/keygen-bank-hsm
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
token: {label: bank-hsm, user_pin: prompt}
keys:
  - {label: bank-kek, type: aes-256, usage: [wrap, unwrap], backup: true}   # exactly these uses: sign, encrypt, decrypt, wrap, unwrap
  - label: receipt-signer
    type: ec-p256
    backup: true
    public_key_pem: out/receipt-signer.pem
    certificate: {common_name: Keyward receipt signer, days: 825, out: out/receipt-signer.crt}
  - {label: login-decrypt, type: rsa-3072, usage: [decrypt], public_key_pem: out/login-decrypt.pem}   # senders encrypt with the PEM
# keysvc's own keys, which production keysvc refuses to start without: keysvc-kek (aes-256 wrap, unwrap),
# keysvc-sm-kek (aes-256 encrypt, decrypt), keysvc-pin-mac and keysvc-audit-digest (generic-secret sign),
# keysvc-audit (ec-p256 sign), each backup: true; the two KEKs destroyable: true, since the first
# KEK rotation (kek-rotate) destroys them. Back them up next (backup keys: [keysvc-kek, …]) and
# restore that backup into every other HSM keysvc uses. keys: may then be left out.
service_keys: true
# Needs approvals from two officers enrolled on the token (quorum: raises it), each over this exact file:
#   ceremony approve keygen -f keygen.yaml -key alice.key -out alice.approval   (Bob likewise)
#   ceremony keygen -f keygen.yaml --approval alice.approval --approval bob.approval
`

const exampleBackup = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/backup-2025-q3
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
token: {label: bank-hsm, user_pin: prompt}
so_pin:                               # both parts: only the SO can make the trusted KEK the keys wrap under
  - {officer: Alice Wong, pin: prompt}
  - {officer: Bob Lee, pin: prompt}
keys: [bank-kek, receipt-signer]      # must have been generated with backup: true (by this version)
threshold: 3
custodians:
  - {name: Carol, share_file: /media/carol/share-carol.txt}
  - {name: Dave,  share_file: /media/dave/share-dave.txt}
  - {name: Erin,  share_file: /media/erin/share-erin.txt}
  - {name: Frank, share_file: /media/frank/share-frank.txt}
  - {name: Grace, share_file: /media/grace/share-grace.txt}
output: out/backup-2025-q3.json
# Needs approvals from two officers enrolled on the token (quorum: raises it), each over this exact file:
#   ceremony approve backup -f backup.yaml -key alice.key -out alice.approval   (Bob likewise)
#   ceremony backup -f backup.yaml --approval alice.approval --approval bob.approval
`

const exampleRestore = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/restore-dr
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
token: {label: bank-hsm-dr, user_pin: prompt}   # the DR site's token, initialised with token init
backup_file: out/backup-2025-q3.json
shares:                                        # any 3 of the 5
  - /media/carol/share-carol.txt
  - /media/erin/share-erin.txt
  - /media/grace/share-grace.txt
# Needs approvals from two officers enrolled on the token (quorum: raises it), each over this exact file:
#   ceremony approve restore -f restore.yaml -key alice.key -out alice.approval   (Bob likewise)
#   ceremony restore -f restore.yaml --approval alice.approval --approval bob.approval
`

const exampleUnlock = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/unlock-bank-hsm
# keysvc's PIN guard, where the lockout is cleared: <data_dir>/keysvc.db, data_dir as in
# keysvc's configuration (stop keysvc first). A file without keysvc's store is refused.
pin_guard: /var/lib/keyward/keysvc.db
# pin_guard_kind: workstation   # only for a token keysvc does not use (pin_guard: the officers' own file)
token: {label: bank-hsm}
so_pin:                      # both parts, as set at token init
  - {officer: Alice Wong, pin: prompt}
  - {officer: Bob Lee, pin: prompt}
new_user_pin: prompt
# Needs approvals from two officers enrolled on the token (quorum: raises it), each over this exact file:
#   ceremony approve unlock -f unlock.yaml -key alice.key -out alice.approval   (Bob likewise)
#   ceremony unlock -f unlock.yaml --approval alice.approval --approval bob.approval
`

const exampleZeroize = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/zeroize-bank-hsm
  signer: {label: ceremony-officers, user_pin: prompt}   # another token signs: the zeroized one keeps no key
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
token: {label: bank-hsm, user_pin: prompt}   # the user PIN lists what is on the token
so_pin:                                        # zeroize is C_InitToken: both SO PIN parts, two officers
  - {officer: Alice Wong, pin: prompt}
  - {officer: Bob Lee, pin: prompt}
backups: [out/backup-bank-hsm/backup.json]     # backup files of this token: the keys they hold are not lost
# Every key on the token that no backup holds, exactly (the dry run lists none; a run without them
# stops, naming them, before anything is erased). keysvc's service keys made by keysvc -dev are never
# backed up: after zeroize keysvc refuses this token with its existing data directory. Service keys made
# with keygen's service_keys: true are held by their backup file: list it under backups: instead.
acknowledge_unbacked: [ceremony-audit, keysvc-kek, keysvc-sm-kek, keysvc-pin-mac, keysvc-audit-digest, keysvc-audit]
# confirmation: ZEROIZE bank-hsm   # only for --yes runs; at a terminal the officer types it
# Needs approvals from two officers enrolled on the token (quorum: raises it), each over this exact file:
#   ceremony approve zeroize -f zeroize.yaml -key alice.key -out alice.approval   (Bob likewise)
#   ceremony zeroize -f zeroize.yaml --approval alice.approval --approval bob.approval
`

const exampleRotate = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/rotate-2025-09
  signer: {label: ceremony-officers, user_pin: prompt}
pin_guard: /var/lib/keyward/keysvc.db   # this host's; keysvc must not run here: run from the officers' workstation
keysvc:
  url: https://keysvc.bank.internal:8443
  ca_file: /etc/keyward/ca.pem
  bearer_token_file: /run/ceremony/admin.token
keys: [receipt-signer, pin-hmac]
`

const exampleScheduleDestroy = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/destroy-2025-09
  signer: {label: ceremony-officers, user_pin: prompt}
pin_guard: /var/lib/keyward/keysvc.db   # this host's; keysvc must not run here: run from the officers' workstation
keysvc:
  url: https://keysvc.bank.internal:8443
  ca_file: /etc/keyward/ca.pem
  bearer_token_file: /run/ceremony/admin.token
versions:
  - {key: receipt-signer, version: 1, delay: 720h}
`

const exampleAuditVerify = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong]
transcript:
  dir: out/audit-2025-09
  signer: {label: ceremony-officers, user_pin: prompt}
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
store: /var/lib/keyward/keysvc.db          # opened read-only: stop keysvc or verify a copy
public_key: /secure/keysvc-audit-key.pem   # your own copy of the audit public key
`

const exampleSeal = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/seal-keysvc
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
token: {label: bank-hsm, user_pin: prompt}   # keysvc's token; this PIN is sealed (checked by a login first)
tpm: /dev/tpmrm0                 # tcp:127.0.0.1:2321 for swtpm
pcrs: [7]                        # bind to the Secure Boot state; [] binds to this TPM only
passphrase: prompt               # recovery passphrase, asked twice (>= 12 characters)
tls_key: /etc/keyward/tls/server.key   # optional; shred the clear file afterwards
out: /var/lib/keyward/secrets.json     # keysvc's secrets.file
# For cmd/banking: no token (then transcript.signer signs), its TLS key, and
#   files: [{name: keysvc-client-key, file: /etc/keyward/bank/banking-key.pem}]
# (or {name: keysvc-bearer, file: …} in development).
`

const exampleReseal = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/reseal-keysvc
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
token: {label: bank-hsm, user_pin: prompt}   # signs the transcript
tpm: /dev/tpmrm0
pcrs: [7]                        # sealed to their values now (after the firmware update)
passphrase: prompt
file: /var/lib/keyward/secrets.json
`

const exampleReplicationKey = `# The replication key: keysvc copies its hsm keys between the tokens of its set under it (issue 15).
# mode: generate on the first token; then mode: install on every other token, from any 3 shares.
module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/replication-key-bank-hsm
pin_guard: /var/lib/keyward/keysvc.db   # keysvc's PIN guard: every login counted there (keysvc stopped)
mode: generate
token: {label: bank-hsm, user_pin: prompt}
so_pin:                               # both parts: only the SO can make a CKA_TRUSTED key
  - {officer: Alice Wong, pin: prompt}
  - {officer: Bob Lee, pin: prompt}
threshold: 3
custodians:
  - {name: Carol, share_file: /media/carol/replication-carol.txt}
  - {name: Dave,  share_file: /media/dave/replication-dave.txt}
  - {name: Erin,  share_file: /media/erin/replication-erin.txt}
  - {name: Frank, share_file: /media/frank/replication-frank.txt}
  - {name: Grace, share_file: /media/grace/replication-grace.txt}
# On the second token (mode: install), instead of threshold and custodians:
#   token: {label: bank-hsm-2, user_pin: prompt}
#   shares: [/media/carol/replication-carol.txt, /media/erin/replication-erin.txt, /media/grace/replication-grace.txt]
#   check_value: 9f3c…   # the 80 hex digits generate printed: a wrong share set is refused before the token is touched
# Needs approvals from two officers enrolled on the token (quorum: raises it), the SO PIN part holders among them:
#   ceremony approve replication-key -f replication-key.yaml -key alice.key -out alice.approval   (Bob likewise)
#   ceremony replication-key -f replication-key.yaml --approval alice.approval --approval bob.approval
`
