package audit_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc/audit"
)

// TestVerifyCheckpointChain: a checkpoint deleted, replaced or unchained
// is refused before any record is read (issue 12 item 6).
func TestVerifyCheckpointChain(t *testing.T) {
	key := newKey(t)
	recs := sealedChain(t, 100)
	cps := checkpointsAt(t, key, recs, 10, 50, 90)
	standalone, _ := audit.SignCheckpoint(key, nil, 50, recs[49].Hash, auditT0)
	v1 := cps[1]
	v1.Index, v1.Prev = 0, nil
	cases := []struct {
		name string
		cps  []audit.Checkpoint
		is   error
		msg  string
	}{
		{"middle deleted", []audit.Checkpoint{cps[0], cps[2]}, audit.ErrTampered, "checkpoint 3 (at record 90) follows checkpoint 1: checkpoints were deleted"},
		{"first deleted", cps[1:], audit.ErrTampered, "the first stored checkpoint (at record 50) is number 2"},
		{"replaced", []audit.Checkpoint{cps[0], standalone, cps[2]}, audit.ErrTampered, "follows checkpoint 1"},
		{"v1 checkpoint", []audit.Checkpoint{cps[0], v1, cps[2]}, audit.ErrUnmigrated, "start keysvc once to migrate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := audit.Verify(iter(recs), c.cps, &key.PublicKey)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, c.is, c.msg)
			}
			if err := audit.VerifyChain(c.cps, &key.PublicKey); !errors.Is(err, c.is) {
				t.Fatalf("VerifyChain = %v, want %v", err, c.is)
			}
		})
	}
	if err := audit.VerifyChain(cps, &key.PublicKey); err != nil {
		t.Fatalf("VerifyChain of a good chain: %v", err)
	}
	if err := audit.VerifyChain(cps, &newKey(t).PublicKey); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("VerifyChain with another key: %v", err)
	}
}

// TestVerifyAnchorCatchesCutBack is the attack of issue 12 item 6: the
// checkpoints after record 50 deleted and the records after it rewritten
// with good hashes. The file alone still verifies (nothing in it can tell),
// so officers' anchor — the seq and hash keysvc logged at a checkpoint —
// must refuse it.
func TestVerifyAnchorCatchesCutBack(t *testing.T) {
	key := newKey(t)
	recs := sealedChain(t, 100)
	cps := checkpointsAt(t, key, recs, 10, 50, 90)
	anchor := audit.Anchor{Seq: 90, Hash: recs[89].Hash}
	if rep, err := audit.Verify(iter(recs), cps, &key.PublicKey, anchor); err != nil || rep.Anchors != 1 {
		t.Fatalf("honest log with its anchor: %+v %v", rep, err)
	}
	forged := append([]audit.Record(nil), recs...)
	seq, prev := uint64(50), recs[49].Hash
	for i := 50; i < len(forged); i++ {
		forged[i].Client = "mallory"
		forged[i].Seal(seq, prev)
		seq, prev = forged[i].Seq, forged[i].Hash
	}
	if _, err := audit.Verify(iter(forged), cps[:2], &key.PublicKey); err != nil {
		t.Fatalf("the cut-back log without an anchor: %v (expected to pass: only an outside anchor can tell)", err)
	}
	_, err := audit.Verify(iter(forged), cps[:2], &key.PublicKey, anchor)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "at record 90: its hash") {
		t.Fatalf("anchor mismatch: %v", err)
	}
	_, err = audit.Verify(iter(forged[:80]), cps[:2], &key.PublicKey, anchor)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "the expected record 90 is not in the log, which ends at 80") {
		t.Fatalf("anchor past the end: %v", err)
	}
}

func TestParseAnchor(t *testing.T) {
	h := strings.Repeat("ab", 32)
	a, err := audit.ParseAnchor(" 1234:" + h + "\n")
	if err != nil || a.Seq != 1234 || hex.EncodeToString(a.Hash) != h || a.String() != "1234:"+h {
		t.Fatalf("ParseAnchor = %+v, %v", a, err)
	}
	for _, bad := range []string{"", "1234", ":" + h, "0:" + h, "-1:" + h, "12:" + h[:62], "12:" + h + "00", "12:zz" + h[2:], "x:" + h} {
		if _, err := audit.ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) accepted", bad)
		}
	}
}

func TestDigester(t *testing.T) {
	d, err := audit.NewDigester(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := audit.NewDigester(bytes.Repeat([]byte{2}, 32))
	body := []byte(`{"message":"cGFzc3dvcmQ="}`)
	sum := sha256.Sum256(body)
	got := d.Digest(sum[:])
	if !audit.IsKeyedDigest(got) || !strings.HasPrefix(got, audit.DigestScheme+":") {
		t.Fatalf("Digest = %q, want %s:<hex>", got, audit.DigestScheme)
	}
	if strings.Contains(got, hex.EncodeToString(sum[:])) {
		t.Fatal("the keyed digest holds the unkeyed SHA-256")
	}
	if d.Digest(sum[:]) != got || other.Digest(sum[:]) == got {
		t.Fatal("Digest is not a deterministic function of key and body")
	}
	if d.Digest(nil) != "" {
		t.Error("no body gives a digest")
	}
	// Migration: an old record's hex SHA-256 becomes what a new record of
	// the same request holds.
	if re, err := d.Rekey(hex.EncodeToString(sum[:])); err != nil || re != got {
		t.Fatalf("Rekey = %q, %v; want %q", re, err, got)
	}
	if re, err := d.Rekey(got); err != nil || re != got {
		t.Fatalf("Rekey of a keyed digest = %q, %v", re, err)
	}
	if re, err := d.Rekey(""); err != nil || re != "" {
		t.Fatalf("Rekey of none = %q, %v", re, err)
	}
	if _, err := d.Rekey("ab12"); err == nil {
		t.Fatal("Rekey accepted a short digest")
	}
	if _, err := audit.NewDigester(make([]byte, 16)); err == nil {
		t.Fatal("NewDigester accepted a 16-byte key")
	}
}

// TestVerifyRefusesUnkeyedDigests: the strict verifier names a log that
// still holds unkeyed digests; the v1 verifier (migration) accepts it.
func TestVerifyRefusesUnkeyedDigests(t *testing.T) {
	key := newKey(t)
	recs := sealedChain(t, 5)
	sum := sha256.Sum256([]byte("body"))
	recs[2].RequestDigest = hex.EncodeToString(sum[:])
	seq, prev := uint64(2), recs[1].Hash
	for i := 2; i < len(recs); i++ {
		recs[i].Seal(seq, prev)
		seq, prev = recs[i].Seq, recs[i].Hash
	}
	_, err := audit.Verify(iter(recs), checkpointsAt(t, key, recs, 5), &key.PublicKey)
	if !errors.Is(err, audit.ErrUnkeyedDigest) || !strings.Contains(err.Error(), "record 3") {
		t.Fatalf("err = %v, want ErrUnkeyedDigest at record 3", err)
	}
	v1cp, _ := audit.SignCheckpoint(key, nil, 5, recs[4].Hash, auditT0)
	v1cp.Index = 0 // a v1 checkpoint: re-sign over the v1 digest
	v1cp.Signature, _ = ecdsa.SignASN1(rand.Reader, key, v1cp.Digest())
	v, err := audit.NewV1Verifier([]audit.Checkpoint{v1cp}, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := v.Run(iter(recs)); err != nil || rep.Checkpoints != 1 {
		t.Fatalf("v1 verifier: %+v %v", rep, err)
	}
}

// TestCheckpointNamesRecord: the store-side check refuses a checkpoint
// beyond the log, at record 0, on a missing record or with another hash,
// and tells a record that does not decode apart from a refusal.
func TestCheckpointNamesRecord(t *testing.T) {
	recs := sealedChain(t, 5)
	raw, err := json.Marshal(recs[2])
	if err != nil {
		t.Fatal(err)
	}
	good := audit.Checkpoint{Seq: 3, Hash: recs[2].Hash}
	if no, err := good.NamesRecord(5, raw); no != nil || err != nil {
		t.Fatalf("NamesRecord(good) = %v, %v", no, err)
	}
	other := audit.Checkpoint{Seq: 3, Hash: recs[1].Hash}
	for _, tc := range []struct {
		name string
		c    audit.Checkpoint
		last uint64
		rec  []byte
		want string
	}{
		{"beyond", audit.Checkpoint{Seq: 6, Hash: recs[2].Hash}, 5, raw, "names audit record 6 but the log ends at 5"},
		{"zero", audit.Checkpoint{Seq: 0}, 5, raw, "names audit record 0 but the log ends at 5"},
		{"missing", good, 5, nil, "audit record 3, which is missing"},
		{"other hash", other, 5, raw, "hash differs from that of audit record 3"},
	} {
		no, err := tc.c.NamesRecord(tc.last, tc.rec)
		if err != nil || no == nil || !strings.Contains(no.Error(), tc.want) {
			t.Errorf("%s: NamesRecord = %v, %v; want a refusal %q", tc.name, no, err, tc.want)
		}
	}
	if no, err := good.NamesRecord(5, []byte("{not json")); no != nil || err == nil {
		t.Fatalf("NamesRecord(undecodable record) = %v, %v; want an error, not a refusal", no, err)
	}
}

// TestSortCheckpoints: by Seq, stable.
func TestSortCheckpoints(t *testing.T) {
	cps := []audit.Checkpoint{{Seq: 9, Index: 1}, {Seq: 2, Index: 2}, {Seq: 9, Index: 3}, {Seq: 5, Index: 4}}
	audit.SortCheckpoints(cps)
	var got []uint64
	for _, c := range cps {
		got = append(got, c.Seq*10+c.Index)
	}
	if want := []uint64{22, 54, 91, 93}; !slices.Equal(got, want) {
		t.Fatalf("SortCheckpoints: seq*10+index = %v, want %v", got, want)
	}
}
