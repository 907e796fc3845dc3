package audit_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
)

var auditT0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

// baseRecord is a record with every field set to a non-zero value.
func baseRecord() audit.Record {
	r := audit.Record{
		Time:          auditT0,
		Client:        "payments",
		Key:           "payments-sign",
		Version:       3,
		Op:            "sign",
		Result:        "ok",
		Detail:        "items=20",
		RequestDigest: "ab12",
	}
	r.Seal(6, bytes.Repeat([]byte{7}, 32))
	return r
}

// sealedChain returns n records chained from Genesis.
func sealedChain(t *testing.T, n int) []audit.Record {
	t.Helper()
	out := make([]audit.Record, 0, n)
	seq, prev := uint64(0), audit.Genesis
	for i := 0; i < n; i++ {
		r := audit.Record{
			Time:    auditT0.Add(time.Duration(i) * time.Second),
			Client:  fmt.Sprintf("client-%d", i%3),
			Key:     "k",
			Version: i%4 + 1,
			Op:      "sign",
			Result:  "ok",
		}
		r.Seal(seq, prev)
		seq, prev = r.Seq, r.Hash
		out = append(out, r)
	}
	return out
}

// checkAll feeds recs to a fresh Checker and returns the first error.
func checkAll(recs []audit.Record) error {
	c := audit.NewChecker()
	for _, r := range recs {
		if err := c.Next(r); err != nil {
			return err
		}
	}
	return nil
}

// iter turns a slice into Verify's next function.
func iter(recs []audit.Record) func() (audit.Record, error) {
	i := 0
	return func() (audit.Record, error) {
		if i >= len(recs) {
			return audit.Record{}, io.EOF
		}
		i++
		return recs[i-1], nil
	}
}

func TestSealSetsSeqPrevHashAndUTC(t *testing.T) {
	prev := bytes.Repeat([]byte{9}, 32)
	local := time.FixedZone("X", 3*3600)
	r := audit.Record{Time: auditT0.In(local), Client: "c", Op: "sign", Result: "ok"}
	r.Seal(41, prev)
	if r.Seq != 42 {
		t.Errorf("Seq = %d, want 42", r.Seq)
	}
	if !bytes.Equal(r.Prev, prev) {
		t.Errorf("Prev = %x, want %x", r.Prev, prev)
	}
	prev[0] = 0 // Seal must copy prevHash
	if r.Prev[0] != 9 {
		t.Error("Seal aliases the caller's prevHash")
	}
	if r.Time.Location() != time.UTC || !r.Time.Equal(auditT0) {
		t.Errorf("Time = %v, want %v in UTC", r.Time, auditT0)
	}
	if !bytes.Equal(r.Hash, r.ComputeHash()) || len(r.Hash) != 32 {
		t.Errorf("Hash = %x, want ComputeHash %x", r.Hash, r.ComputeHash())
	}
}

func TestComputeHashCoversEveryField(t *testing.T) {
	cases := map[string]func(r *audit.Record){
		"Seq":           func(r *audit.Record) { r.Seq++ },
		"Time":          func(r *audit.Record) { r.Time = r.Time.Add(time.Nanosecond) },
		"Client":        func(r *audit.Record) { r.Client = "payments2" },
		"Key":           func(r *audit.Record) { r.Key = "other" },
		"Version":       func(r *audit.Record) { r.Version = 4 },
		"Op":            func(r *audit.Record) { r.Op = "rotate" },
		"Result":        func(r *audit.Record) { r.Result = "forbidden" },
		"Detail":        func(r *audit.Record) { r.Detail = "items=21" },
		"RequestDigest": func(r *audit.Record) { r.RequestDigest = "ab13" },
		"Prev":          func(r *audit.Record) { r.Prev = append([]byte(nil), r.Prev...); r.Prev[31] ^= 1 },
	}
	// Every field except Hash must have a case, so a new field cannot be
	// added without deciding whether the hash covers it.
	rt := reflect.TypeOf(audit.Record{})
	for i := 0; i < rt.NumField(); i++ {
		name := rt.Field(i).Name
		if _, ok := cases[name]; !ok && name != "Hash" {
			t.Errorf("field %s has no case in this table", name)
		}
	}
	base := baseRecord()
	want := base.ComputeHash()
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := baseRecord()
			mutate(&r)
			if got := r.ComputeHash(); bytes.Equal(got, want) {
				t.Errorf("changing %s does not change the hash", name)
			}
			again := baseRecord()
			if !bytes.Equal(again.ComputeHash(), want) {
				t.Error("ComputeHash is not deterministic")
			}
		})
	}
}

func TestComputeHashIgnoresHashAndLocation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(r *audit.Record)
	}{
		{"Hash", func(r *audit.Record) { r.Hash = []byte("anything") }},
		{"time zone", func(r *audit.Record) { r.Time = r.Time.In(time.FixedZone("Y", -7*3600)) }},
	}
	base := baseRecord()
	want := base.ComputeHash()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := baseRecord()
			c.mutate(&r)
			if got := r.ComputeHash(); !bytes.Equal(got, want) {
				t.Errorf("hash changed: %x, want %x", got, want)
			}
		})
	}
}

func TestComputeHashFieldBoundaries(t *testing.T) {
	// Length prefixes keep "ab"+"c" and "a"+"bc" apart.
	a := audit.Record{Client: "ab", Key: "c"}
	b := audit.Record{Client: "a", Key: "bc"}
	if bytes.Equal(a.ComputeHash(), b.ComputeHash()) {
		t.Error("moving a byte between Client and Key does not change the hash")
	}
}

func TestCheckerAcceptsChain(t *testing.T) {
	recs := sealedChain(t, 100)
	c := audit.NewChecker()
	if seq, h := c.Last(); seq != 0 || !bytes.Equal(h, audit.Genesis) {
		t.Fatalf("fresh Last() = %d, %x", seq, h)
	}
	for _, r := range recs {
		if err := c.Next(r); err != nil {
			t.Fatalf("record %d: %v", r.Seq, err)
		}
	}
	seq, h := c.Last()
	if seq != 100 || !bytes.Equal(h, recs[99].Hash) {
		t.Errorf("Last() = %d, %x; want 100, %x", seq, h, recs[99].Hash)
	}
}

func TestCheckerRejectsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(recs []audit.Record) []audit.Record
		want   string // exact prefix of the message after "audit: chain broken "
	}{
		{name: "edited version", tamper: func(recs []audit.Record) []audit.Record {
			recs[44].Version = 9
			return recs
		}, want: "at record 45: contents do not match its hash"},
		{"edited field", func(recs []audit.Record) []audit.Record {
			recs[39].Client = "mallory"
			return recs
		}, "at record 40: contents do not match its hash"},
		{"edited time", func(recs []audit.Record) []audit.Record {
			recs[9].Time = recs[9].Time.Add(time.Second)
			return recs
		}, "at record 10: contents do not match its hash"},
		{"edited hash", func(recs []audit.Record) []audit.Record {
			recs[59].Hash = append([]byte(nil), recs[59].Hash...)
			recs[59].Hash[0] ^= 1
			return recs
		}, "at record 60: contents do not match its hash"},
		{"deleted record", func(recs []audit.Record) []audit.Record {
			return append(recs[:49:49], recs[50:]...)
		}, "at record 51: expected sequence number 50"},
		{"deleted first record", func(recs []audit.Record) []audit.Record {
			return recs[1:]
		}, "at record 2: expected sequence number 1"},
		{"swapped records", func(recs []audit.Record) []audit.Record {
			recs[69], recs[70] = recs[70], recs[69]
			return recs
		}, "at record 71: expected sequence number 70"},
		{"wrong prev (resealed)", func(recs []audit.Record) []audit.Record {
			recs[29].Seal(29, bytes.Repeat([]byte{1}, 32))
			return recs
		}, "at record 30: previous-hash link does not match record 29"},
		{"wrong prev on first record", func(recs []audit.Record) []audit.Record {
			recs[0].Seal(0, bytes.Repeat([]byte{1}, 32))
			return recs
		}, "at record 1: previous-hash link does not match record 0"},
		{"duplicate seq", func(recs []audit.Record) []audit.Record {
			out := append([]audit.Record(nil), recs[:80]...)
			out = append(out, recs[79])
			return append(out, recs[80:]...)
		}, "at record 80: expected sequence number 81"},
		{"rewritten record with renumbered tail", func(recs []audit.Record) []audit.Record {
			// Edit record 20 and reseal it: the link from 21 breaks.
			recs[19].Op = "destroy"
			recs[19].Seal(19, recs[18].Hash)
			return recs
		}, "at record 21: previous-hash link does not match record 20"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkAll(c.tamper(sealedChain(t, 100)))
			if !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered", err)
			}
			if want := audit.ErrTampered.Error() + " " + c.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err = %q, want prefix %q", err, want)
			}
		})
	}
}

func TestCheckerStopsAtFault(t *testing.T) {
	recs := sealedChain(t, 10)
	recs[4].Result = "forbidden"
	c := audit.NewChecker()
	for _, r := range recs[:4] {
		if err := c.Next(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Next(recs[4]); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("err = %v", err)
	}
	if seq, h := c.Last(); seq != 4 || !bytes.Equal(h, recs[3].Hash) {
		t.Errorf("after a fault Last() = %d; want 4 (the last good record)", seq)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	recs := []audit.Record{baseRecord(), sealedChain(t, 1)[0]}
	for _, r := range recs {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := audit.Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Time.Equal(r.Time) {
			t.Errorf("Time = %v, want %v", got.Time, r.Time)
		}
		got.Time, r.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
	// The decoded record still verifies.
	b, _ := recs[1].Marshal()
	got, _ := audit.Unmarshal(b)
	if err := audit.NewChecker().Next(got); err != nil {
		t.Errorf("decoded record does not verify: %v", err)
	}
	if _, err := audit.Unmarshal([]byte(`{"seq":"x"}`)); err == nil {
		t.Error("Unmarshal accepted a bad record")
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignCheckpointAndVerifySignature(t *testing.T) {
	key, other := newKey(t), newKey(t)
	hash := bytes.Repeat([]byte{5}, 32)
	now := auditT0.In(time.FixedZone("Z", 3600))
	cp, err := audit.SignCheckpoint(key, nil, 12, hash, now)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seq != 12 || !bytes.Equal(cp.Hash, hash) || !cp.Time.Equal(now) || cp.Time.Location() != time.UTC || cp.Index != 1 || cp.Prev != nil {
		t.Fatalf("checkpoint = %+v", cp)
	}
	hash[0] = 0
	if cp.Hash[0] != 5 {
		t.Error("SignCheckpoint aliases the caller's hash")
	}
	cases := []struct {
		name   string
		mutate func(c *audit.Checkpoint)
		pub    *ecdsa.PublicKey
		ok     bool
	}{
		{"right key", func(*audit.Checkpoint) {}, &key.PublicKey, true},
		{"wrong key", func(*audit.Checkpoint) {}, &other.PublicKey, false},
		{"seq changed", func(c *audit.Checkpoint) { c.Seq++ }, &key.PublicKey, false},
		{"hash changed", func(c *audit.Checkpoint) { c.Hash = bytes.Repeat([]byte{6}, 32) }, &key.PublicKey, false},
		{"time changed", func(c *audit.Checkpoint) { c.Time = c.Time.Add(time.Nanosecond) }, &key.PublicKey, false},
		{"index changed", func(c *audit.Checkpoint) { c.Index = 2 }, &key.PublicKey, false},
		{"prev changed", func(c *audit.Checkpoint) { c.Prev = bytes.Repeat([]byte{1}, 32) }, &key.PublicKey, false},
		{"signature corrupted", func(c *audit.Checkpoint) {
			c.Signature = append([]byte(nil), c.Signature...)
			c.Signature[len(c.Signature)-1] ^= 1
		}, &key.PublicKey, false},
		{"no signature", func(c *audit.Checkpoint) { c.Signature = nil }, &key.PublicKey, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc := cp
			c.mutate(&cc)
			err := cc.VerifySignature(c.pub)
			if c.ok {
				if err != nil {
					t.Fatalf("VerifySignature: %v", err)
				}
				return
			}
			if !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered", err)
			}
			if want := fmt.Sprintf("checkpoint at record %d has a bad signature", cc.Seq); !strings.Contains(err.Error(), want) {
				t.Errorf("err = %q, want it to contain %q", err, want)
			}
		})
	}
}

type failingSigner struct{ *ecdsa.PrivateKey }

var errSignerDown = errors.New("token gone")

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errSignerDown
}

func TestSignCheckpointSignerError(t *testing.T) {
	_, err := audit.SignCheckpoint(failingSigner{newKey(t)}, nil, 1, audit.Genesis, auditT0)
	if !errors.Is(err, errSignerDown) {
		t.Fatalf("err = %v, want the signer's error wrapped", err)
	}
}

// checkpointsAt signs a chain of checkpoints for the given record numbers
// of recs (chained in ascending order) and returns them in the order given.
func checkpointsAt(t *testing.T, key *ecdsa.PrivateKey, recs []audit.Record, seqs ...uint64) []audit.Checkpoint {
	t.Helper()
	sorted := slices.Sorted(slices.Values(seqs))
	bySeq := map[uint64]audit.Checkpoint{}
	var prev *audit.Checkpoint
	for _, s := range sorted {
		cp, err := audit.SignCheckpoint(key, prev, s, recs[s-1].Hash, auditT0.Add(time.Duration(s)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		bySeq[s] = cp
		prev = &cp
	}
	var out []audit.Checkpoint
	for _, s := range seqs {
		out = append(out, bySeq[s])
	}
	return out
}

// noHashes clears a report's hashes, to compare its counts.
func noHashes(r audit.Report) audit.Report {
	r.LastHash, r.LastCheckpointHash = nil, nil
	return r
}

func TestVerifyClean(t *testing.T) {
	key := newKey(t)
	recs := sealedChain(t, 100)
	cases := []struct {
		name string
		recs []audit.Record
		seqs []uint64
		pub  *ecdsa.PublicKey
		want audit.Report
	}{
		{"checkpoints", recs, []uint64{10, 50, 90}, &key.PublicKey,
			audit.Report{Records: 100, Checkpoints: 3, LastSeq: 100, Unsigned: 10, LastCheckpoint: 90}},
		{"checkpoint at the end", recs, []uint64{1, 100}, &key.PublicKey,
			audit.Report{Records: 100, Checkpoints: 2, LastSeq: 100, Unsigned: 0, LastCheckpoint: 100}},
		{"out of order", recs, []uint64{90, 10, 50}, &key.PublicKey,
			audit.Report{Records: 100, Checkpoints: 3, LastSeq: 100, Unsigned: 10, LastCheckpoint: 90}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cps []audit.Checkpoint
			if len(c.seqs) > 0 {
				cps = checkpointsAt(t, key, recs, c.seqs...)
			}
			orig := append([]audit.Checkpoint(nil), cps...)
			rep, err := audit.Verify(iter(c.recs), cps, c.pub)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !reflect.DeepEqual(noHashes(rep), c.want) {
				t.Errorf("report = %+v, want %+v", rep, c.want)
			}
			if last := c.seqs[slices.Index(c.seqs, slices.Max(c.seqs))]; !bytes.Equal(rep.LastCheckpointHash, recs[last-1].Hash) || !bytes.Equal(rep.LastHash, recs[len(recs)-1].Hash) {
				t.Errorf("report hashes = %x, %x", rep.LastHash, rep.LastCheckpointHash)
			}
			if !reflect.DeepEqual(cps, orig) {
				t.Error("Verify reordered the caller's checkpoint slice")
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	key, other := newKey(t), newKey(t)
	recs := sealedChain(t, 100)
	errRead := errors.New("disk on fire")
	cases := []struct {
		name     string
		next     func() (audit.Record, error)
		cps      func() []audit.Checkpoint
		pub      *ecdsa.PublicKey
		tampered bool   // errors.Is ErrTampered
		is       error  // or errors.Is this
		msg      string // substring of the message
		wantRep  *audit.Report
	}{
		{
			name: "checkpoint hash mismatch",
			next: iter(recs),
			cps: func() []audit.Checkpoint {
				cp, _ := audit.SignCheckpoint(key, nil, 40, bytes.Repeat([]byte{3}, 32), auditT0)
				return []audit.Checkpoint{cp}
			},
			pub: &key.PublicKey, tampered: true,
			msg: "at record 40: the signed checkpoint names a different hash",
		},
		{
			name: "whole chain rewritten after a checkpoint",
			next: func() func() (audit.Record, error) {
				cp := append([]audit.Record(nil), recs...)
				cp[19].Client = "mallory"
				seq, prev := uint64(19), cp[18].Hash
				for i := 19; i < len(cp); i++ {
					cp[i].Seal(seq, prev)
					seq, prev = cp[i].Seq, cp[i].Hash
				}
				return iter(cp)
			}(),
			cps:      func() []audit.Checkpoint { return checkpointsAt(t, key, recs, 10, 50) },
			pub:      &key.PublicKey,
			tampered: true,
			msg:      "at record 50: the signed checkpoint names a different hash",
		},
		{
			name:     "checkpoint beyond the end",
			next:     iter(recs[:60]),
			cps:      func() []audit.Checkpoint { return checkpointsAt(t, key, recs, 10, 80) },
			pub:      &key.PublicKey,
			tampered: true,
			msg:      "a signed checkpoint names record 80 but the log ends at 60",
			wantRep:  &audit.Report{Records: 60, Checkpoints: 1, LastSeq: 60, LastCheckpoint: 80},
		},
		{
			name:    "no checkpoint",
			next:    iter(recs),
			cps:     func() []audit.Checkpoint { return nil },
			pub:     &key.PublicKey,
			is:      audit.ErrNoCheckpoint,
			msg:     "100 records and no signed checkpoint",
			wantRep: &audit.Report{Records: 100, LastSeq: 100, Unsigned: 100},
		},
		{
			name: "empty log, no checkpoint",
			next: iter(nil),
			cps:  func() []audit.Checkpoint { return nil },
			is:   audit.ErrNoCheckpoint,
			msg:  "0 records and no signed checkpoint",
		},
		{
			name: "two checkpoints for one record",
			next: iter(recs),
			cps: func() []audit.Checkpoint {
				c1, _ := audit.SignCheckpoint(key, nil, 50, recs[49].Hash, auditT0)
				c2 := c1
				c2.Index, c2.Prev = 2, c1.Digest()
				return []audit.Checkpoint{c1, c2}
			},
			pub: &key.PublicKey, tampered: true,
			msg: "checkpoint 2 names record 50, not after record 50 of checkpoint 1",
		},
		{
			name: "checkpoints out of order still checked",
			next: iter(recs),
			cps: func() []audit.Checkpoint {
				// A validly signed, chained checkpoint for record 10 with
				// the wrong hash, given last: only a sorted walk reaches it
				// at record 10.
				bad, _ := audit.SignCheckpoint(key, nil, 10, recs[10].Hash, auditT0)
				c50, _ := audit.SignCheckpoint(key, &bad, 50, recs[49].Hash, auditT0)
				c90, _ := audit.SignCheckpoint(key, &c50, 90, recs[89].Hash, auditT0)
				return []audit.Checkpoint{c90, c50, bad}
			},
			pub:      &key.PublicKey,
			tampered: true,
			msg:      "at record 10: the signed checkpoint names a different hash",
		},
		{
			name: "checkpoint seq 0",
			next: iter(recs),
			cps: func() []audit.Checkpoint {
				cp, _ := audit.SignCheckpoint(key, nil, 0, audit.Genesis, auditT0)
				return []audit.Checkpoint{cp}
			},
			pub:      &key.PublicKey,
			tampered: true,
			msg:      "a checkpoint names record 0",
		},
		{
			name: "checkpoint seq 0 among others",
			next: iter(recs),
			cps: func() []audit.Checkpoint {
				c := checkpointsAt(t, key, recs, 10)
				c2, _ := audit.SignCheckpoint(key, nil, 0, audit.Genesis, auditT0)
				return append(c, c2)
			},
			pub:      &key.PublicKey,
			tampered: true,
			msg:      "a checkpoint names record 0",
		},
		{
			name: "nil public key with checkpoints",
			next: iter(recs),
			cps:  func() []audit.Checkpoint { return checkpointsAt(t, key, recs, 10) },
			pub:  nil,
			msg:  "checkpoints present but no audit public key",
		},
		{
			name:     "checkpoint signed by another key",
			next:     iter(recs),
			cps:      func() []audit.Checkpoint { return checkpointsAt(t, other, recs, 10) },
			pub:      &key.PublicKey,
			tampered: true,
			msg:      "checkpoint at record 10 has a bad signature",
		},
		{
			name: "broken chain",
			next: func() func() (audit.Record, error) {
				cp := append([]audit.Record(nil), recs...)
				cp[4].Detail = "x"
				return iter(cp)
			}(),
			cps:      func() []audit.Checkpoint { return checkpointsAt(t, key, recs, 90) },
			pub:      &key.PublicKey,
			tampered: true,
			msg:      "at record 5: contents do not match its hash",
		},
		{
			name: "read error",
			next: func() func() (audit.Record, error) {
				n := iter(recs)
				i := 0
				return func() (audit.Record, error) {
					if i++; i == 7 {
						return audit.Record{}, errRead
					}
					return n()
				}
			}(),
			cps: func() []audit.Checkpoint { return nil },
			is:  errRead,
			msg: "disk on fire",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep, err := audit.Verify(c.next, c.cps(), c.pub)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", rep)
			}
			if got := errors.Is(err, audit.ErrTampered); got != c.tampered {
				t.Errorf("errors.Is(err, ErrTampered) = %v, want %v (err %v)", got, c.tampered, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("err = %v, want errors.Is %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want it to contain %q", err, c.msg)
			}
			if c.wantRep != nil && !reflect.DeepEqual(noHashes(rep), *c.wantRep) {
				t.Errorf("report = %+v, want %+v", rep, *c.wantRep)
			}
		})
	}
}

func newKeyF(f *testing.F) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }
