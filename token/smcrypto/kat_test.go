package smcrypto_test

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"

	"github.com/keyward/keyward/token/smcrypto"
)

// unhex decodes a hex string that may contain spaces (as printed in the
// standards); it fails the test on malformed input.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// derSig encodes (r, s) as the DER SEQUENCE{r INTEGER, s INTEGER} that
// SM2Sign produces.
func derSig(t testing.TB, rHex, sHex string) []byte {
	t.Helper()
	r, ok1 := new(big.Int).SetString(rHex, 16)
	s, ok2 := new(big.Int).SetString(sHex, 16)
	if !ok1 || !ok2 {
		t.Fatalf("bad signature hex")
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestSM3KnownAnswers checks the two examples of GB/T 32905-2016 Appendix A
// (A.1: "abc"; A.2: "abcd" repeated 16 times, 512 bits).
func TestSM3KnownAnswers(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"GB/T 32905-2016 A.1 abc", []byte("abc"), "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
		{"GB/T 32905-2016 A.2 abcd*16", []byte(strings.Repeat("abcd", 16)), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := smcrypto.SM3(tc.in)
			if hex.EncodeToString(got[:]) != tc.want {
				t.Fatalf("SM3 = %x, want %s", got, tc.want)
			}
		})
	}
}

// TestHMACSM3KnownAnswers uses the HMAC-SM3 vectors of GM/T 0042-2015
// Appendix D.3 as transcribed in OpenSSL's
// test/recipes/30-test_evp_data/evpmac_sm3.txt (Title "HMAC-SM3 from GM/T
// 0042-2015 Appendix D.3"). The same values are produced by
// "openssl mac -digest SM3 -macopt hexkey:<key> HMAC".
func TestHMACSM3KnownAnswers(t *testing.T) {
	tests := []struct {
		name     string
		key, msg []byte
		want     string
	}{
		{
			name: "D.3 case 1 (32-byte key, 112-byte msg)",
			key:  []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32},
			msg:  []byte("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopqabcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
			want: "ca05e144ed05d1857840d1f318a4a8669e559fc8391f414485bfdf7bb408963a",
		},
		{
			name: "D.3 case 2 (37-byte key, 50 x 0xcd)",
			key:  unhex(t, "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425"),
			msg:  bytes.Repeat([]byte{0xcd}, 50),
			want: "220bf579ded555393f0159f66c99877822a3ecf610d1552154b41d44b94db3ae",
		},
		{
			name: "D.3 case 3 (Hi There)",
			key:  bytes.Repeat([]byte{0x0b}, 32),
			msg:  []byte("Hi There"),
			want: "c0ba18c68b90c88bc07de794bfc7d2c8d19ec31ed8773bc2b390c9604e0be11e",
		},
		{
			name: "D.3 case 4 (Jefe)",
			key:  []byte("Jefe Jeferson Jr"),
			msg:  []byte("what do ya want for nothing?"),
			want: "ce791a34c59adef472997a249600f3f244d59e875be04055ba2ae12fc845e78c",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hex.EncodeToString(smcrypto.HMACSM3(tc.key, tc.msg)); got != tc.want {
				t.Fatalf("HMAC-SM3 = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestSM4KnownAnswers checks GB/T 32907-2016 Appendix A on the SM4 block
// cipher that SM4GCM*/SM4CBC* are built on (gmsm's sm4.NewCipher): example
// 1 is a single encryption, example 2 encrypts the same block 1,000,000
// times (skipped under -short).
func TestSM4KnownAnswers(t *testing.T) {
	key := unhex(t, "0123456789abcdeffedcba9876543210")
	tests := []struct {
		name  string
		iters int
		want  string
	}{
		{"GB/T 32907-2016 A.1 one encryption", 1, "681edf34d206965e86b3e94f536e4246"},
		{"GB/T 32907-2016 A.2 1,000,000 encryptions", 1000000, "595298c7c6fd271f0402f804c33d3f66"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.iters > 1 && testing.Short() {
				t.Skip("1,000,000-iteration SM4 vector skipped in -short mode")
			}
			b, err := sm4.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			blk := bytes.Clone(key) // plaintext = key in both examples
			for range tc.iters {
				b.Encrypt(blk, blk)
			}
			if got := hex.EncodeToString(blk); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if tc.iters == 1 {
				b.Decrypt(blk, blk)
				if !bytes.Equal(blk, key) {
					t.Fatalf("decrypt(encrypt(p)) = %x, want %x", blk, key)
				}
			}
		})
	}
}

// TestSM4CBCDecryptKnownAnswers feeds published SM4-CBC ciphertexts through
// SM4CBCDecrypt. The IV=0 case has the GB/T 32907-2016 A.1 ciphertext as its
// first block; the second case is the two-block SM4-CBC vector of OpenSSL's
// test/recipes/30-test_evp_data/evpciph_sm4.txt (from
// draft-ribose-cfrg-sm4). Those vectors are unpadded, so each is followed by
// the PKCS#7 padding block that OpenSSL 3.0.22 appends
// ("openssl enc -sm4-cbc -K <key> -iv <iv>"); its first blocks reproduce the
// published values exactly.
func TestSM4CBCDecryptKnownAnswers(t *testing.T) {
	key := unhex(t, "0123456789abcdeffedcba9876543210")
	tests := []struct {
		name, iv, ct, pt string
	}{
		{
			name: "GB/T 32907 A.1 block, IV=0",
			iv:   "00000000000000000000000000000000",
			ct:   "681edf34d206965e86b3e94f536e4246" + "677d307e844d7aa24579d556490dc7aa",
			pt:   "0123456789abcdeffedcba9876543210",
		},
		{
			name: "evpciph_sm4.txt two-block CBC",
			iv:   "0123456789abcdeffedcba9876543210",
			ct:   "2677f46b09c122cc975533105bd4a22af6125f7275ce552c3a2bbcf533de8a3b" + "a2da148e822f80b36e4b248d742bf4fb",
			pt:   "0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := append(unhex(t, tc.iv), unhex(t, tc.ct)...)
			got, err := smcrypto.SM4CBCDecrypt(key, data)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.pt); !bytes.Equal(got, want) {
				t.Fatalf("got %x, want %x", got, want)
			}
		})
	}
}

// TestSM4GCMOpenKnownAnswer opens the SM4-GCM example of RFC 8998
// Appendix A.1 (also in OpenSSL's evpciph_sm4.txt "SM4 GCM test vectors from
// RFC8998"), laid out as SM4GCMSeal's nonce ‖ ciphertext ‖ tag.
func TestSM4GCMOpenKnownAnswer(t *testing.T) {
	key := unhex(t, "0123456789abcdeffedcba9876543210")
	nonce := unhex(t, "00001234567800000000abcd")
	aad := unhex(t, "feedfacedeadbeeffeedfacedeadbeefabaddad2")
	pt := unhex(t, "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccddddddddddddddddeeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa")
	ct := unhex(t, "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d")
	tag := unhex(t, "83de3541e4c2b58177e065a9bf7b62ec")
	sealed := append(append(bytes.Clone(nonce), ct...), tag...)

	tests := []struct {
		name    string
		aad     []byte
		mutate  int // index of sealed to flip, -1 for none
		wantErr bool
	}{
		{"published vector opens", aad, -1, false},
		{"aad mismatch", aad[:len(aad)-1], -1, true},
		{"flipped tag bit", aad, len(sealed) - 1, true},
		{"flipped nonce bit", aad, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(sealed)
			if tc.mutate >= 0 {
				in[tc.mutate] ^= 0x01
			}
			got, err := smcrypto.SM4GCMOpen(key, in, tc.aad)
			if tc.wantErr {
				if err != smcrypto.ErrDecrypt {
					t.Fatalf("err = %v, want ErrDecrypt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatalf("plaintext mismatch: %x", got)
			}
		})
	}
}

// The SM2 example on the recommended curve of GM/T 0003.5-2012 and
// GB/T 32918.5-2017 (Annexes A and C): key pair, signature of "message
// digest" with ID "1234567812345678", and the ASN.1 (GM/T 0009) ciphertext
// of "encryption standard". Private key, r, s and the ciphertext are taken
// verbatim from OpenSSL's test/sm2_internal_test.c (sm2_sig_test,
// sm2_crypt_test: "From Annex A/C in both GM/T0003.5-2012 and
// GB/T 32918.5-2016"); Z_A and e are the intermediate values printed in the
// same annex (reproduced, e.g., in GmSSL's early crypto/sm2/sm2test.c as
// Z_exp/Dgst_exp).
const (
	stdPriv = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
	stdPubX = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
	stdPubY = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
	stdZA   = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
	stdE    = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
	stdR    = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
	stdS    = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
	stdMsg  = "message digest"

	stdEncPlain = "encryption standard"
	stdEncX1    = "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
	stdEncY1    = "E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
	stdEncC3    = "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
	stdEncC2    = "21886CA989CA9C7D58087307CA93092D651EFA"
	// stdEncASN1 is the exact DER from sm2_internal_test.c.
	stdEncASN1 = "307C" + "0220" + stdEncX1 + "022100" + stdEncY1 + "0420" + stdEncC3 + "0413" + stdEncC2
)

func stdKey(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := smcrypto.ParseSM2Private(unhex(t, stdPriv))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSM2StandardKeyPair(t *testing.T) {
	k := stdKey(t)
	if got := strings.ToUpper(hex.EncodeToString(k.X.FillBytes(make([]byte, 32)))); got != stdPubX {
		t.Errorf("x_A = %s, want %s", got, stdPubX)
	}
	if got := strings.ToUpper(hex.EncodeToString(k.Y.FillBytes(make([]byte, 32)))); got != stdPubY {
		t.Errorf("y_A = %s, want %s", got, stdPubY)
	}
	if got := strings.ToUpper(hex.EncodeToString(smcrypto.MarshalSM2Private(k))); got != stdPriv {
		t.Errorf("MarshalSM2Private = %s, want %s", got, stdPriv)
	}
}

func TestSM2StandardDigest(t *testing.T) {
	k := stdKey(t)
	za, err := sm2.CalculateZA(&k.PublicKey, []byte(smcrypto.DefaultUID))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ToUpper(hex.EncodeToString(za)); got != stdZA {
		t.Errorf("Z_A = %s, want %s", got, stdZA)
	}
	for _, uid := range [][]byte{nil, {}, []byte(smcrypto.DefaultUID)} {
		e, err := smcrypto.SM2Digest(&k.PublicKey, uid, []byte(stdMsg))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(e)); got != stdE {
			t.Errorf("uid %q: e = %s, want %s", uid, got, stdE)
		}
	}
	e, err := smcrypto.SM2Digest(&k.PublicKey, []byte("ALICE123@YAHOO.COM"), []byte(stdMsg))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ToUpper(hex.EncodeToString(e)) == stdE {
		t.Error("digest does not depend on uid")
	}
}

func TestSM2StandardSignature(t *testing.T) {
	k := stdKey(t)
	pub := &k.PublicKey
	sig := derSig(t, stdR, stdS)
	e := unhex(t, stdE)
	tests := []struct {
		name string
		ok   func() bool
		want bool
	}{
		{"SM2Verify default uid (nil)", func() bool { return smcrypto.SM2Verify(pub, nil, []byte(stdMsg), sig) }, true},
		{"SM2Verify explicit uid", func() bool { return smcrypto.SM2Verify(pub, []byte(smcrypto.DefaultUID), []byte(stdMsg), sig) }, true},
		{"SM2VerifyDigest published e", func() bool { return smcrypto.SM2VerifyDigest(pub, e, sig) }, true},
		{"wrong uid", func() bool { return smcrypto.SM2Verify(pub, []byte("1234567812345679"), []byte(stdMsg), sig) }, false},
		{"wrong message", func() bool { return smcrypto.SM2Verify(pub, nil, []byte("message digesT"), sig) }, false},
		{"r and s swapped", func() bool { return smcrypto.SM2Verify(pub, nil, []byte(stdMsg), derSig(t, stdS, stdR)) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ok(); got != tc.want {
				t.Fatalf("verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSM2StandardCiphertext(t *testing.T) {
	k := stdKey(t)
	tests := []struct {
		name string
		ct   string
	}{
		{"ASN.1 SM2Cipher (GM/T 0009) as in OpenSSL", stdEncASN1},
		{"raw C1C3C2", "04" + stdEncX1 + stdEncY1 + stdEncC3 + stdEncC2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := smcrypto.SM2Decrypt(k, unhex(t, tc.ct))
			if err != nil {
				t.Fatal(err)
			}
			if string(pt) != stdEncPlain {
				t.Fatalf("plaintext = %q, want %q", pt, stdEncPlain)
			}
		})
	}
	// The obsolete C1C2C3 order of the same ciphertext must not decrypt.
	c1c2c3 := unhex(t, "04"+stdEncX1+stdEncY1+stdEncC2+stdEncC3)
	if _, err := smcrypto.SM2Decrypt(k, c1c2c3); err != smcrypto.ErrDecrypt {
		t.Fatalf("C1C2C3 input: err = %v, want ErrDecrypt", err)
	}
}
