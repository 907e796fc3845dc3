package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fuzz targets for what the ceremony reads from outside: the ceremony
// YAML files and the custodians' share files. Parsing only, no token.

// fuzzConfigs makes one empty configuration of each ceremony.
var fuzzConfigs = []func() (validator, *common){
	func() (validator, *common) { c := &initConfig{}; return c, &c.common },
	func() (validator, *common) { c := &keygenConfig{}; return c, &c.common },
	func() (validator, *common) { c := &backupConfig{}; return c, &c.common },
	func() (validator, *common) { c := &restoreConfig{}; return c, &c.common },
	func() (validator, *common) { c := &unlockConfig{}; return c, &c.common },
	func() (validator, *common) { c := &zeroizeConfig{}; return c, &c.common },
	func() (validator, *common) { c := &rotateConfig{}; return c, &c.common },
	func() (validator, *common) { c := &scheduleDestroyConfig{}; return c, &c.common },
	func() (validator, *common) { c := &kekRotateConfig{}; return c, &c.common },
	func() (validator, *common) { c := &auditVerifyConfig{}; return c, &c.common },
	func() (validator, *common) { c := &sealConfig{}; return c, &c.common },
	func() (validator, *common) { c := &resealConfig{}; return c, &c.common },
	func() (validator, *common) { c := &officerEnrolConfig{}; return c, &c.common },
	func() (validator, *common) { c := &officerRetireConfig{}; return c, &c.common },
	func() (validator, *common) { c := &replicationKeyConfig{}; return c, &c.common },
}

// FuzzCeremonyConfig: any bytes, read as any ceremony's file, are either
// accepted or refused as a configuration error (exit 2, nothing done) —
// never a panic, never another kind of failure; an accepted file has a
// pin_guard (every login is counted somewhere).
func FuzzCeremonyConfig(f *testing.F) {
	for i, ex := range []string{exampleInit, exampleKeygen, exampleBackup, exampleRestore, exampleUnlock, exampleZeroize,
		exampleRotate, exampleScheduleDestroy, exampleAuditVerify, exampleSeal, exampleReseal, exampleReplicationKey} {
		f.Add(uint8(i), []byte(ex))
	}
	for _, name := range []string{"init.yaml", "keygen.yaml", "backup.yaml", "unlock.yaml", "seal.yaml"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(uint8(0), b)
		}
	}
	f.Add(uint8(1), []byte("module: /bin/sh\nofficers: [A]\ntranscript: {dir: out}\npin_guard: g.db\ntoken: {label: t, user_pin: prompt}\nkeys: [{label: k, type: ec-p256}]\n"))
	f.Add(uint8(2), []byte("a: &a [*a, *a]\n"))
	f.Add(uint8(3), []byte("---\n---\n"))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "g.db"), nil, 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind uint8, raw []byte) {
		cfg, cm := fuzzConfigs[int(kind)%len(fuzzConfigs)]()
		err := parseConfig(raw, "fuzz.yaml", dir, cfg, cm)
		if err != nil && !errors.Is(err, errConfig) {
			t.Fatalf("a bad file failed other than as a configuration error: %v", err)
		}
		if err == nil && cm.PINGuard == "" {
			t.Fatal("a file without pin_guard was accepted")
		}
	})
}

// FuzzParseShare: a share file (v2, or v1 as made before issue 13) either
// parses or is refused; what parses has a 16-byte backup id and a 33-byte
// share under a good checksum, a v2 share a well-formed header, and it
// encodes back (as v2) to a file that parses to the same share and header.
func FuzzParseShare(f *testing.F) {
	sh := share{backupID: bytes.Repeat([]byte{7}, 16), threshold: 3, value: bytes.Repeat([]byte{9}, 33)}
	good := encodeShare(sh, "Carol", 1, 5, time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC))
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("0707"), []byte("0708"), 1))
	f.Add(bytes.Replace(good, []byte("custodian: Carol"), []byte("custodian: Mallory"), 1))
	f.Add(encodeShareV1(sh, "Carol", 1, 5, time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)))
	f.Add([]byte(shareBegin + "\n" + shareEnd))
	f.Add([]byte(shareEnd + shareBegin))
	f.Add([]byte(shareEndV1 + shareBeginV1))
	f.Add([]byte("-----BEGIN KEYWARD BACKUP SHARE V2-----\nZZZZ\n-----END KEYWARD BACKUP SHARE V2-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseShare(data)
		if err != nil {
			return
		}
		if len(got.backupID) != 16 || len(got.value) != 33 {
			t.Fatalf("parsed a share of %d+%d bytes", len(got.backupID), len(got.value))
		}
		if got.version == 2 && (got.custodian == "" || len(got.custodian) > maxCustodian || got.index < 1 || got.index > got.total || got.threshold > got.total) {
			t.Fatalf("parsed a v2 share with a malformed header: %+v", got)
		}
		name, index, total := got.custodian, got.index, got.total
		if got.version == 1 {
			if got.threshold < 1 { // v1 never checked it; a v2 share must have one
				return
			}
			name, index, total = "x", 1, max(2, got.threshold)
		}
		again, err := parseShare(encodeShare(got, name, index, total, time.Unix(0, 0)))
		if err != nil || !bytes.Equal(again.backupID, got.backupID) || again.threshold != got.threshold || !bytes.Equal(again.value, got.value) ||
			again.custodian != name || again.index != index || again.total != total {
			t.Fatalf("a parsed share does not survive encode/parse: %v", err)
		}
	})
}
