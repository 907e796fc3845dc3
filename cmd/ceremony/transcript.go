package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
)

// Transcripts (R-CER-2). transcript.json is an envelope: the body (what
// happened), the SHA-256 of the body's compact JSON, and an ECDSA P-256
// signature over that hash by the signing token's ceremony-audit key, whose
// public key is inside the body. transcript.md is the same body for people.
// Neither ever holds a PIN or a share.

const (
	transcriptFormat = "keyward.ceremony.transcript.v1"
	auditKeyLabel    = "ceremony-audit"
)

// errVerify marks a failed verification (exit code 4).
var errVerify = errors.New("verification failed")

type tokenIdentity struct {
	Role         string `json:"role"`
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Model        string `json:"model"`
	Manufacturer string `json:"manufacturer"`
}

type step struct {
	Time   time.Time `json:"time"`
	Name   string    `json:"name"`
	Detail string    `json:"detail,omitempty"`
}

type keyRecord struct {
	Label     string `json:"label"`
	ID        string `json:"id,omitempty"` // CKA_ID, hex
	Type      string `json:"type"`
	Token     string `json:"token,omitempty"`
	PublicSHA string `json:"public_key_sha256,omitempty"` // SHA-256 of the SubjectPublicKeyInfo DER
	Note      string `json:"note,omitempty"`
}

type outputRecord struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

type signerRecord struct {
	Token        tokenIdentity `json:"token"`
	Key          string        `json:"key"`
	PublicKeyPEM string        `json:"public_key_pem"`
	PublicSHA    string        `json:"public_key_sha256"`
}

type transcriptBody struct {
	Format       string          `json:"format"`
	Ceremony     string          `json:"ceremony"`
	ConfigSHA256 string          `json:"config_sha256"`
	DryRun       bool            `json:"dry_run,omitempty"`
	Host         string          `json:"host"`
	Started      time.Time       `json:"started"`
	Finished     time.Time       `json:"finished"`
	Officers     []string        `json:"officers"`
	Tokens       []tokenIdentity `json:"tokens"`
	Steps        []step          `json:"steps"`
	Keys         []keyRecord     `json:"keys,omitempty"`
	Outputs      []outputRecord  `json:"outputs,omitempty"`
	Result       string          `json:"result"`
	Signer       *signerRecord   `json:"signer,omitempty"`
	// Approvals: the officers' signed approvals that let the run start
	// (approvals.go), with their keys as read from the token's roster.
	Approvals []approvalRecord `json:"approvals,omitempty"`
	Unsigned  string           `json:"unsigned,omitempty"` // why the transcript is not signed
}

type envelope struct {
	Body       json.RawMessage `json:"body"`
	BodySHA256 string          `json:"body_sha256"`
	Signature  string          `json:"signature"` // base64 ASN.1 ECDSA over body_sha256's bytes; empty: unsigned
}

// recorder collects the transcript while a ceremony runs and shows each
// step to the officers.
type recorder struct {
	body transcriptBody
	out  io.Writer
	n    int

	signPool *pkcs11shim.Pool // set once the signing token is open
	signInfo pkcs11shim.TokenInfo
	unsigned string    // why no signer is open (said on stderr and in the transcript)
	warn     io.Writer // stderr
}

func newRecorder(ceremony string, raw []byte, officers []string, out io.Writer) *recorder {
	h := sha256.Sum256(raw)
	host, _ := os.Hostname()
	return &recorder{out: out, body: transcriptBody{Format: transcriptFormat, Ceremony: ceremony, ConfigSHA256: hex.EncodeToString(h[:]),
		Host: host, Started: time.Now().UTC(), Officers: officers}}
}

// step records and shows a banner for one step.
func (r *recorder) step(name, format string, a ...any) {
	r.n++
	d := fmt.Sprintf(format, a...)
	r.body.Steps = append(r.body.Steps, step{Time: time.Now().UTC(), Name: name, Detail: d})
	fmt.Fprintf(r.out, "\n== Step %d: %s ==\n", r.n, name)
	if d != "" {
		fmt.Fprintf(r.out, "   %s\n", d)
	}
}

func (r *recorder) token(role string, ti pkcs11shim.TokenInfo) {
	r.body.Tokens = append(r.body.Tokens, identity(role, ti))
}

func identity(role string, ti pkcs11shim.TokenInfo) tokenIdentity {
	return tokenIdentity{Role: role, Label: ti.Label, Serial: ti.Serial, Model: ti.Model, Manufacturer: ti.Manufacturer}
}

func (r *recorder) key(k keyRecord) { r.body.Keys = append(r.body.Keys, k) }

func (r *recorder) output(path string, data []byte) {
	h := sha256.Sum256(data)
	r.body.Outputs = append(r.body.Outputs, outputRecord{Path: path, SHA256: hex.EncodeToString(h[:])})
}

// fingerprint is the SHA-256 of a public key's SubjectPublicKeyInfo.
func fingerprint(pub crypto.PublicKey) (string, []byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", nil, err
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// finish signs (when a signer is open) and writes the transcript. The
// result says how the ceremony ended.
func (r *recorder) finish(ctx context.Context, dir string, cerr error) error {
	r.body.Finished = time.Now().UTC()
	r.body.Result = "ok"
	if cerr != nil {
		r.body.Result = "failed: " + cerr.Error()
	}
	env := envelope{}
	var signErr error
	if r.signPool != nil {
		if signErr = r.sign(ctx, &env); signErr != nil {
			r.body.Signer = nil
			r.unsigned = "signing failed: " + oneLine(signErr)
		}
	} else if r.unsigned == "" {
		r.unsigned = "no signing token was open"
	}
	if r.signPool == nil || signErr != nil {
		r.body.Unsigned = r.unsigned
		// Unsigned: still written, so a failed ceremony leaves a record;
		// `transcript verify` reports it as unsigned.
		body, err := json.Marshal(r.body)
		if err != nil {
			return err
		}
		h := sha256.Sum256(body)
		env = envelope{Body: body, BodySHA256: hex.EncodeToString(h[:])}
	}
	js, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	jp, mp := filepath.Join(dir, "transcript.json"), filepath.Join(dir, "transcript.md")
	if err := writeExcl(jp, append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeExcl(mp, []byte(r.markdown(env.Signature != "")), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "\ntranscript: %s (and transcript.md)\n", jp)
	if r.body.Signer != nil && env.Signature != "" {
		fmt.Fprintf(r.out, "transcript signed by %s on token %s; public key SHA-256 %s\n", r.body.Signer.Key, r.body.Signer.Token.Label, r.body.Signer.PublicSHA)
	} else {
		warn := r.warn
		if warn == nil {
			warn = r.out
		}
		fmt.Fprintf(warn, "WARNING: the transcript %s is NOT signed: %s\n", jp, r.unsigned)
	}
	return signErr
}

func (r *recorder) sign(ctx context.Context, env *envelope) error {
	k, err := r.signPool.FindKey(ctx, auditKeyLabel)
	if err != nil {
		return fmt.Errorf("transcript signing key: %w", err)
	}
	signer, err := r.signPool.NewSigner(ctx, k)
	if err != nil {
		return err
	}
	fp, pemBytes, err := fingerprint(signer.Public())
	if err != nil {
		return err
	}
	r.body.Signer = &signerRecord{Token: identity("transcript-signer", r.signInfo), Key: auditKeyLabel, PublicKeyPEM: string(pemBytes), PublicSHA: fp}
	body, err := json.Marshal(r.body)
	if err != nil {
		return err
	}
	h := sha256.Sum256(body)
	sig, err := signer.Sign(nil, h[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing the transcript: %w", err)
	}
	*env = envelope{Body: body, BodySHA256: hex.EncodeToString(h[:]), Signature: base64.StdEncoding.EncodeToString(sig)}
	return nil
}

func (r *recorder) markdown(signed bool) string {
	b := &r.body
	var s strings.Builder
	fmt.Fprintf(&s, "# Key ceremony transcript: %s\n\n", b.Ceremony)
	fmt.Fprintf(&s, "- Result: **%s**\n- Started: %s\n- Finished: %s\n- Host: %s\n- Configuration SHA-256: `%s`\n", b.Result, b.Started.Format(time.RFC3339), b.Finished.Format(time.RFC3339), b.Host, b.ConfigSHA256)
	if b.DryRun {
		s.WriteString("- Dry run: nothing was changed\n")
	}
	s.WriteString("\n## Officers\n\n")
	for _, o := range b.Officers {
		fmt.Fprintf(&s, "- %s\n", o)
	}
	s.WriteString("\n## Tokens\n\n| Role | Label | Serial | Model | Manufacturer |\n|---|---|---|---|---|\n")
	for _, t := range b.Tokens {
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", t.Role, t.Label, t.Serial, t.Model, t.Manufacturer)
	}
	s.WriteString("\n## Steps\n\n")
	for i, st := range b.Steps {
		fmt.Fprintf(&s, "%d. %s — **%s**", i+1, st.Time.Format(time.RFC3339), st.Name)
		if st.Detail != "" {
			fmt.Fprintf(&s, ": %s", st.Detail)
		}
		s.WriteString("\n")
	}
	if len(b.Keys) > 0 {
		s.WriteString("\n## Keys\n\n| Label | Type | CKA_ID | Token | Public key SHA-256 | Note |\n|---|---|---|---|---|---|\n")
		for _, k := range b.Keys {
			fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s |\n", k.Label, k.Type, k.ID, k.Token, k.PublicSHA, k.Note)
		}
	}
	if len(b.Outputs) > 0 {
		s.WriteString("\n## Outputs\n\n")
		for _, o := range b.Outputs {
			fmt.Fprintf(&s, "- `%s` SHA-256 `%s`\n", o.Path, o.SHA256)
		}
	}
	approvalsMarkdown(&s, b)
	s.WriteString("\n## Signature\n\n")
	if signed && b.Signer != nil {
		fmt.Fprintf(&s, "transcript.json is signed (ECDSA P-256, SHA-256) by key `%s` on token %s (serial %s).\nSigning public key SHA-256: `%s`\n\nCheck it with `ceremony transcript verify transcript.json -pubkey ceremony-audit.pem` (the signer's public key as written at token init) or `-fingerprint %s`, taking the key or fingerprint from your own record, not from this file.\n", b.Signer.Key, b.Signer.Token.Label, b.Signer.Token.Serial, b.Signer.PublicSHA, b.Signer.PublicSHA)
	} else {
		fmt.Fprintf(&s, "**NOT SIGNED**: %s.\n", r.unsigned)
	}
	return s.String()
}

// verifyTranscript checks a transcript.json: the body hash, and the
// signature with the embedded public key, which must match wantPub when
// given. It returns the body.
func verifyTranscript(path string, wantPub *ecdsa.PublicKey) (*transcriptBody, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: %s is not a transcript: %v", errVerify, path, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, env.Body); err != nil {
		return nil, fmt.Errorf("%w: body: %v", errVerify, err)
	}
	h := sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(h[:]) != env.BodySHA256 {
		return nil, fmt.Errorf("%w: the body's SHA-256 does not match body_sha256: the transcript was changed", errVerify)
	}
	var body transcriptBody
	bd := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	bd.DisallowUnknownFields()
	if err := bd.Decode(&body); err != nil || body.Format != transcriptFormat {
		return nil, fmt.Errorf("%w: body is not a %s transcript", errVerify, transcriptFormat)
	}
	if env.Signature == "" || body.Signer == nil {
		return &body, fmt.Errorf("%w: the transcript is not signed", errVerify)
	}
	blk, _ := pem.Decode([]byte(body.Signer.PublicKeyPEM))
	if blk == nil {
		return nil, fmt.Errorf("%w: signer public key is not PEM", errVerify)
	}
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	pub, ok := pk.(*ecdsa.PublicKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: signer public key is not ECDSA", errVerify)
	}
	if fp, _, _ := fingerprint(pub); fp != body.Signer.PublicSHA {
		return nil, fmt.Errorf("%w: the signer's fingerprint does not match its public key", errVerify)
	}
	if wantPub != nil && !wantPub.Equal(pub) {
		return nil, fmt.Errorf("%w: signed by a different key than the one given with -pubkey", errVerify)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signature)
	if err != nil || !ecdsa.VerifyASN1(pub, h[:], sig) {
		return nil, fmt.Errorf("%w: the signature does not verify", errVerify)
	}
	if _, err := verifyBodyApprovals(&body); err != nil {
		return nil, err
	}
	return &body, nil
}

// writeExcl creates path (never overwriting) and writes data.
func writeExcl(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
