package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"

	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/token/smcrypto"
)

// writeNew creates path with data; an existing file is an error, never
// overwritten (O_EXCL).
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return usageErr("%s exists; bankcli never overwrites a file: pick another name or remove it", path)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// receiptFiles are where a receipt is saved.
type receiptFiles struct{ body, sig, key string }

func (r receiptFiles) any() bool { return r.body != "" || r.sig != "" || r.key != "" }

func (r receiptFiles) check() error {
	if r.body == "" || r.sig == "" || r.key == "" {
		return usageErr("-out, -sig and -key go together (the receipt body, its DER signature, the bank's public key)")
	}
	for _, p := range []string{r.body, r.sig, r.key} {
		if _, err := os.Lstat(p); err == nil {
			return usageErr("%s exists; bankcli never overwrites a file: pick another name or remove it", p)
		}
	}
	return nil
}

// writeReceipt checks the receipt's signature with the bank's receipt key
// (ECDSA P-256 over SHA-256 of the exact body) and writes the body, the
// DER signature and the key's PEM, so that
// `openssl dgst -sha256 -verify <key> -signature <sig> <body>` verifies.
// Nothing is written if the signature does not verify.
func writeReceipt(rc bankwire.Receipt, keyPEM string, to receiptFiles) error {
	if err := to.check(); err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(rc.Signature)
	if err != nil {
		return errorf("the receipt's signature is not base64: %w", err)
	}
	blk, _ := pem.Decode([]byte(keyPEM))
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return errorf("the bank's receipt key is not a PEM public key")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return errorf("the bank's receipt key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return errorf("the bank's receipt key is a %T, not ECDSA", pub)
	}
	sum := sha256.Sum256([]byte(rc.Body))
	if !ecdsa.VerifyASN1(ec, sum[:], sig) {
		return errorf("the receipt's signature does not verify with the bank's receipt key; nothing written")
	}
	if err := writeNew(to.body, []byte(rc.Body), 0o644); err != nil {
		return err
	}
	if err := writeNew(to.sig, sig, 0o644); err != nil {
		return err
	}
	return writeNew(to.key, pem.EncodeToMemory(blk), 0o644)
}

// readSignature reads a signature file as DER: raw DER (as openssl and
// kwsign -out write it) or its base64 (as kwsign prints it).
func readSignature(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 && b[0] == 0x30 { // an ASN.1 SEQUENCE: raw DER
		return b, nil
	}
	der, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(der) == 0 || der[0] != 0x30 {
		return nil, errorf("%s holds neither a DER signature nor its base64", path)
	}
	return der, nil
}

// usbPublicKey reads the PEM public key of a USB key and names its
// algorithm for the bank: EC P-256 or SM2.
func usbPublicKey(path string) (pemText, alg string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return "", "", usageErr("%s: want a PEM \"PUBLIC KEY\" (openssl ec -in key.pem -pubout)", path)
	}
	if pub, err := x509.ParsePKIXPublicKey(blk.Bytes); err == nil {
		if ec, ok := pub.(*ecdsa.PublicKey); ok && ec.Curve == elliptic.P256() {
			return string(pem.EncodeToMemory(blk)), "ec-p256", nil
		}
		return "", "", usageErr("%s: a USB key must be EC P-256 or SM2", path)
	}
	if _, err := smcrypto.ParseSM2Public(blk.Bytes); err == nil {
		return string(pem.EncodeToMemory(blk)), "sm2", nil
	}
	return "", "", usageErr("%s: a USB key must be EC P-256 or SM2", path)
}
