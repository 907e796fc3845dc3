package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyward/keyward/pkcs11shim"
)

// Signing every transcript that can be signed (issue 13 defect 4, R-CER-2).
// A ceremony that fails before it opened its signing token (a restore
// whose shares do not match, an unlock refused by the token) still signs
// its failed transcript: finish opens the signer then — transcript.signer,
// or the ceremony's own token — unless a login to that token already
// failed in this run (a wrong or locked PIN is never tried twice). When
// the transcript cannot be signed, transcript.md and stderr say why.

func selKey(sel pkcs11shim.Selector) string { return sel.Label + "\x00" + sel.Serial }

// loginFailed remembers a failed login to sel: no second attempt to sign.
func (s *session) loginFailed(sel pkcs11shim.Selector, err error) {
	if s.failed == nil {
		s.failed = map[string]error{}
	}
	s.failed[selKey(sel)] = err
}

// lateSigner opens the signing token at the end of a ceremony that has no
// signer open yet, or records on the transcript why it is not signed.
func (s *session) lateSigner(ctx context.Context, cm *common) {
	ref := cm.Transcript.Signer
	if ref == nil {
		ref = s.signRef
	}
	if ref == nil {
		if s.rec.unsigned == "" {
			s.rec.unsigned = "no signing token could be used: the ceremony failed before a token with a ceremony-audit key was open, and the file names no transcript.signer"
		}
		return
	}
	if err, ok := s.failed[selKey(ref.selector())]; ok {
		s.rec.unsigned = fmt.Sprintf("the signing token %s could not be opened (%v); its PIN was not tried again", ref.Label, oneLine(err))
		return
	}
	if s.mod == nil {
		if err := s.openModule(cm.Module); err != nil {
			s.rec.unsigned = fmt.Sprintf("the PKCS#11 module could not be loaded to sign: %v", oneLine(err))
			return
		}
	}
	p, err := s.pool(ctx, ref, "transcript-signer")
	if err != nil {
		s.rec.unsigned = fmt.Sprintf("the signing token %s could not be opened: %v", ref.Label, oneLine(err))
		return
	}
	s.rec.signPool, s.rec.signInfo = p, p.Info()
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// checkFingerprint checks the transcript's signer against the fingerprint
// the officers recorded (`transcript verify -fingerprint`).
func checkFingerprint(body *transcriptBody, want string) error {
	norm := strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(want)))
	if len(norm) != 64 || strings.Trim(norm, "0123456789abcdef") != "" {
		return fmt.Errorf("%w: -fingerprint must be the 64 hex digits of the signer public key's SHA-256, as printed at the ceremony", errUsage)
	}
	if body.Signer == nil || body.Signer.PublicSHA != norm {
		return fmt.Errorf("%w: signed by a different key than the fingerprint given with -fingerprint", errVerify)
	}
	return nil
}

const pinHelp = `give the signer you expect: -pubkey ceremony-audit.pem (the file token init wrote to audit_public_key_out, or the PEM it printed) or -fingerprint <SHA-256 hex of the signer's public key, as printed at the ceremony>. Without one, a transcript re-signed with any key would pass`
