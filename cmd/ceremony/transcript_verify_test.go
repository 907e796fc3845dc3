package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13 defect 4: a transcript re-signed with any key passed `transcript
// verify` without -pubkey; runs that failed before their token opened left
// unsigned transcripts, and said so only in passing on stdout.

// forge re-signs a transcript's body, with the officers changed, under a
// key of the forger's own.
func forge(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	var body transcriptBody
	if err := json.Unmarshal(env.Body, &body); err != nil {
		t.Fatal(err)
	}
	body.Officers = []string{"Mallory"}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fp, pemBytes, _ := fingerprint(&key.PublicKey)
	body.Signer.PublicKeyPEM, body.Signer.PublicSHA = string(pemBytes), fp
	b, _ := json.Marshal(body)
	h := sha256.Sum256(b)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, h[:])
	out, _ := json.Marshal(envelope{Body: b, BodySHA256: hex.EncodeToString(h[:]), Signature: base64.StdEncoding.EncodeToString(sig)})
	p := filepath.Join(t.TempDir(), "forged.json")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTranscriptVerifyNeedsPinnedSigner(t *testing.T) {
	setup(t)
	label := newLabel("pin")
	f, out := ceremonyFile(t, "init.yaml", map[string]string{"LABEL": label})
	r := mustRun(t, []string{"token", "init"}, f, out, "--yes")
	path := filepath.Join(out, "transcript", "transcript.json")
	fp := recordAuditKey(t, label, r.stdout)
	forged := forge(t, path)

	// Unpinned: refused as a usage error, saying how to pin — for the
	// genuine transcript and for the forgery alike.
	for _, p := range []string{path, forged} {
		v := runBin(t, "transcript", "verify", p)
		if v.code != exitUsage || !strings.Contains(v.stderr, "-pubkey") || !strings.Contains(v.stderr, "-fingerprint") || strings.Contains(v.stdout, "transcript ok") {
			t.Fatalf("unpinned verify of %s: want exit 2 saying how to pin; %v", filepath.Base(p), v)
		}
	}
	// Pinned to the real signer: the forgery fails, by fingerprint and by key.
	if v := runBin(t, "transcript", "verify", forged, "-fingerprint", fp); v.code != exitVerify || !strings.Contains(v.stderr, "different key") {
		t.Fatalf("forgery with -fingerprint: %v", v)
	}
	pubPEM := filepath.Join(t.TempDir(), "audit.pem")
	i := strings.Index(r.stdout, "-----BEGIN PUBLIC KEY-----")
	j := strings.Index(r.stdout, "-----END PUBLIC KEY-----") + len("-----END PUBLIC KEY-----")
	os.WriteFile(pubPEM, []byte(r.stdout[i:j]+"\n"), 0o600)
	if v := runBin(t, "transcript", "verify", forged, "-pubkey", pubPEM); v.code != exitVerify {
		t.Fatalf("forgery with -pubkey: %v", v)
	}
	// The genuine transcript passes, the fingerprint written any usual way.
	colons := strings.ToUpper(fp[:2] + ":" + fp[2:])
	for _, pin := range []string{fp, colons} {
		if v := runBin(t, "transcript", "verify", path, "-fingerprint", pin); v.code != 0 {
			t.Fatalf("genuine transcript with -fingerprint %s: %v", pin, v)
		}
	}
	if v := runBin(t, "transcript", "verify", path, "-fingerprint", "abc"); v.code != exitUsage {
		t.Fatalf("malformed fingerprint: %v", v)
	}
}

// TestFailedRunsAreSigned: a restore refused before its target token was
// opened (the backup file is not one) is signed by that token; a failed
// unlock whose file names transcript.signer is signed by it; one that
// names none says on stderr and in transcript.md why it is not signed.
func TestFailedRunsAreSigned(t *testing.T) {
	setup(t)
	dr := initToken(t, "fail")
	junk := filepath.Join(t.TempDir(), "backup.json")
	os.WriteFile(junk, []byte(`{"format":"nothing"}`), 0o600)
	rf, rout := ceremonyFile(t, "restore.yaml", map[string]string{"LABEL": dr, "BACKUP": junk, "SHARES": junk})
	r := runApproved(t, []string{"restore"}, rf)
	if r.code == 0 {
		t.Fatalf("restore of a junk backup: %v", r)
	}
	tp := filepath.Join(rout, "transcript", "transcript.json")
	if v := verifyPinned(t, tp); v.code != 0 || !strings.Contains(v.stdout, `result "failed:`) {
		t.Fatalf("failed restore's transcript is not signed by the target token: %v\n%v", r, v)
	}

	// unlock refused by the token (wrong second SO part), no signer named.
	label := initToken(t, "failul")
	wf, wout := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Bob Lee", "PART2": "wrong-part"})
	r = runApproved(t, []string{"unlock"}, wf)
	md, _ := os.ReadFile(filepath.Join(wout, "transcript", "transcript.md"))
	if r.code != exitFailed || !strings.Contains(r.stderr, "NOT signed: no signing token could be used") || !strings.Contains(string(md), "**NOT SIGNED**: no signing token could be used") {
		t.Fatalf("unsigned unlock transcript does not say why: %v\n%s", r, md)
	}
	// The same with transcript.signer: signed by it.
	officers := initToken(t, "failsig")
	sf, sout := ceremonyFile(t, "unlock.yaml", map[string]string{"LABEL": label, "OFFICER2": "Bob Lee", "PART2": "wrong-part"})
	raw, _ := os.ReadFile(sf)
	text := strings.Replace(string(raw), "transcript:\n", "transcript:\n  signer: {label: "+officers+", user_pin: \"file:"+pinDir+"/user\"}\n", 1)
	os.WriteFile(sf, []byte(text), 0o600)
	if r := runApproved(t, []string{"unlock"}, sf); r.code != exitFailed {
		t.Fatalf("unlock with a wrong SO part: %v", r)
	}
	if v := verifyPinned(t, filepath.Join(sout, "transcript", "transcript.json")); v.code != 0 || !strings.Contains(v.stdout, "on token "+officers) {
		t.Fatalf("failed unlock's transcript not signed by transcript.signer: %v", v)
	}
}
