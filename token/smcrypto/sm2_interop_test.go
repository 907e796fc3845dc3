package smcrypto_test

// SM2 encryption interop in bulk, so that a fault in a fraction of a percent
// of ciphertexts (issue 12 item 11: gmsm's A5 restart broke 1 in 256 one-byte
// ciphertexts) cannot hide: thousands of ciphertexts over 64 keys, half of
// them 1-byte, in both directions, against two other implementations:
//
//   - OpenSSL 3.0's libcrypto through testdata/openssl/sm2batch.c (the
//     EVP_PKEY_encrypt/decrypt calls of "openssl pkeyutl", batched in one
//     process; needs a C compiler and the OpenSSL headers, libssl-dev);
//   - the npm package sm-crypto 0.5.8, through testdata/sm-crypto/referee.js
//     (installed by scripts/deps.sh with npm ci into
//     testdata/sm-crypto/node_modules).
//
// A missing referee skips the test with a message saying how to install it,
// except under CI=true, where it fails.
//
// GB/T 32918.4 6.1 step A5 (t all zero: start again with a new k) and 7.1
// step B4 (t all zero: refuse): OpenSSL 3.0.19 keeps both (0 of 20,000 of
// its 1-byte ciphertexts had t = 0, where 78 were expected without A5, and
// it refuses zeroTCiphertext with SM2_R_INVALID_ENCODING), so any OpenSSL
// ciphertext SM2Decrypt refuses is a failure. sm-crypto 0.5.8 keeps
// neither (doEncrypt and doDecrypt never look at t), so about 1 in 256 of
// its 1-byte ciphertexts has C2 = M in clear; SM2Decrypt must refuse
// exactly those, which the test tells apart with refDecrypt, the standard's
// procedure written out independently of gmsm.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/keyward/keyward/token/smcrypto"
)

const (
	interopKeys = 64
	// Per key: ciphertexts we make for OpenSSL to decrypt, ciphertexts
	// OpenSSL makes for us, and the same for sm-crypto (whose big-number
	// arithmetic is slower, ~10 ms a point multiplication).
	interopToOpenSSL   = 40
	interopFromOpenSSL = 16
	interopToSMCrypto  = 12
	interopFromSMCrypt = 4
)

// interopLens are the plaintext lengths used besides 1 byte: around the
// 32-byte KDF block and SM3 input boundaries, and a typical SM4 key.
var interopLens = []int{2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 255, 300}

// interopLen is the plaintext length of the i-th message for a key: every
// other message is 1 byte, where an all-zero t is likeliest (1 in 256).
func interopLen(i int) int {
	if i%2 == 0 {
		return 1
	}
	return interopLens[(i/2)%len(interopLens)]
}

// needReferee skips, or fails under CI=true, when a referee is missing.
func needReferee(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and "+format, args...)
	}
	t.Skipf(format, args...)
}

// interopKeySet returns interopKeys fresh SM2 keys, the first with a public
// x, the second with a public y, below 2^248 (a leading zero byte, the
// shorter INTEGER/padding case).
func interopKeySet(t *testing.T) []*sm2.PrivateKey {
	t.Helper()
	short := func(coord func(*sm2.PrivateKey) *big.Int) *sm2.PrivateKey {
		for range 1 << 14 {
			k := mustGenerate(t)
			if coord(k).BitLen() <= 248 {
				return k
			}
		}
		t.Fatal("no key with a short coordinate in 16384 tries")
		return nil
	}
	keys := []*sm2.PrivateKey{
		short(func(k *sm2.PrivateKey) *big.Int { return k.X }),
		short(func(k *sm2.PrivateKey) *big.Int { return k.Y }),
	}
	for len(keys) < interopKeys {
		keys = append(keys, mustGenerate(t))
	}
	return keys
}

// interopMessage is the i-th plaintext for key j.
func interopMessage(t *testing.T, j, i int) []byte {
	pt := randBytes(t, interopLen(i))
	pt[0] = byte(j) // keeps messages apart in failure reports
	return pt
}

// checkFromReferee decrypts a ciphertext made by a referee with SM2Decrypt.
// It returns "tzero" if the ciphertext has an all-zero t (refused by the
// standard's step B4, and by SM2Decrypt), "" if SM2Decrypt returned pt,
// and an error message otherwise.
func checkFromReferee(k *sm2.PrivateKey, ct, raw, pt []byte) (string, error) {
	got, err := smcrypto.SM2Decrypt(k, ct)
	if err == nil && bytes.Equal(got, pt) {
		return "", nil
	}
	if err == nil {
		return "", fmt.Errorf("SM2Decrypt returned %x, want %x", got, pt)
	}
	_, ref := refDecrypt(k.D, raw)
	if errors.Is(ref, errRefTZero) && bytes.Equal(raw[97:], pt) {
		return "tzero", nil
	}
	return "", fmt.Errorf("SM2Decrypt refused it (%v), the standard's procedure says %v", err, ref)
}

// shortC1 reports whether x or y of the raw ciphertext's C1 has a leading
// zero byte.
func shortC1(raw []byte) bool { return raw[1] == 0 || raw[33] == 0 }

// buildSM2Batch compiles testdata/openssl/sm2batch.c against libcrypto.
func buildSM2Batch(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		needReferee(t, "no C compiler to build the OpenSSL referee (%v): run scripts/deps.sh", err)
	}
	src, err := filepath.Abs("testdata/openssl/sm2batch.c")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "sm2batch")
	if out, err := exec.CommandContext(t.Context(), cc, "-O2", "-o", bin, src, "-lcrypto").CombinedOutput(); err != nil {
		needReferee(t, "cannot build the OpenSSL referee (install the OpenSSL headers, libssl-dev, e.g. with scripts/deps.sh): %v\n%s", err, out)
	}
	return bin
}

// runSM2Batch sends requests to one sm2batch process and returns its
// answers, one per request.
func runSM2Batch(t *testing.T, bin string, reqs []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "OPENSSL_CONF=/dev/null")
	cmd.Stdin = strings.NewReader(strings.Join(reqs, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sm2batch: %v\n%s", err, stderr.Bytes())
	}
	var answers []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<17), 1<<17)
	for sc.Scan() {
		answers = append(answers, sc.Text())
	}
	if len(answers) != len(reqs) {
		t.Fatalf("sm2batch answered %d of %d requests", len(answers), len(reqs))
	}
	return answers
}

// writeInteropKeys writes key-NN.pem (PKCS#8) and pub-NN.pem (our
// MarshalSM2Public) for each key into dir.
func writeInteropKeys(t *testing.T, dir string, keys []*sm2.PrivateKey) {
	t.Helper()
	for j, k := range keys {
		der, err := smx509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, fmt.Sprintf("key-%02d.pem", j), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		pub, err := smcrypto.MarshalSM2Public(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, fmt.Sprintf("pub-%02d.pem", j), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	}
}

// interopFailures collects failures and reports the first few.
type interopFailures struct {
	n     int
	first []string
}

func (f *interopFailures) add(format string, args ...any) {
	f.n++
	if len(f.first) < 8 {
		f.first = append(f.first, fmt.Sprintf(format, args...))
	}
}

func (f *interopFailures) check(t *testing.T, what string, total int) {
	t.Helper()
	if f.n > 0 {
		t.Errorf("%s: %d of %d failed, first ones:\n%s", what, f.n, total, strings.Join(f.first, "\n"))
	}
}

func TestSM2InteropOpenSSL(t *testing.T) {
	bin := buildSM2Batch(t)
	dir := t.TempDir()
	keys := interopKeySet(t)
	writeInteropKeys(t, dir, keys)

	t.Run("ours decrypted by OpenSSL", func(t *testing.T) {
		var reqs []string
		var pts, raws [][]byte
		for j, k := range keys {
			for i := range interopToOpenSSL {
				pt := interopMessage(t, j, i)
				ct, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, smcrypto.EncodingASN1)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := sm2.ASN1Ciphertext2Plain(ct, nil)
				if err != nil {
					t.Fatal(err)
				}
				reqs = append(reqs, fmt.Sprintf("D %s %x", filepath.Join(dir, fmt.Sprintf("key-%02d.pem", j)), ct))
				pts, raws = append(pts, pt), append(raws, raw)
			}
		}
		var fails interopFailures
		short := 0
		for n, ans := range runSM2Batch(t, bin, reqs) {
			if shortC1(raws[n]) {
				short++
			}
			if ans != "OK "+hex.EncodeToString(pts[n]) {
				fails.add("key %d, %d-byte plaintext, ciphertext %s: OpenSSL says %q", n/interopToOpenSSL, len(pts[n]), strings.Fields(reqs[n])[2], ans)
			}
		}
		fails.check(t, "OpenSSL decryption of our ciphertexts", len(reqs))
		t.Logf("%d ciphertexts over %d keys, %d with a C1 coordinate shorter than 32 bytes", len(reqs), len(keys), short)
		if short == 0 {
			t.Error("no ciphertext exercised a C1 coordinate with a leading zero byte")
		}
	})

	t.Run("OpenSSL's decrypted by us", func(t *testing.T) {
		var reqs []string
		var pts [][]byte
		for j := range keys {
			for i := range interopFromOpenSSL {
				pt := interopMessage(t, j, i)
				reqs = append(reqs, fmt.Sprintf("E %s %x", filepath.Join(dir, fmt.Sprintf("pub-%02d.pem", j)), pt))
				pts = append(pts, pt)
			}
		}
		var fails interopFailures
		for n, ans := range runSM2Batch(t, bin, reqs) {
			ct, err := hex.DecodeString(strings.TrimPrefix(ans, "OK "))
			if !strings.HasPrefix(ans, "OK ") || err != nil {
				t.Fatalf("OpenSSL encryption failed: %q", ans)
			}
			raw, err := sm2.ASN1Ciphertext2Plain(ct, nil)
			if err != nil {
				fails.add("OpenSSL ciphertext %x is not an SM2Cipher: %v", ct, err)
				continue
			}
			kind, err := checkFromReferee(keys[n/interopFromOpenSSL], ct, raw, pts[n])
			if kind == "tzero" {
				err = errors.New("OpenSSL made a ciphertext with t all zero (C2 = M), against GB/T 32918.4 6.1 A5; SM2Decrypt rightly refused it (B4)")
			}
			if err != nil {
				fails.add("key %d, %d-byte plaintext, ciphertext %x: %v", n/interopFromOpenSSL, len(pts[n]), ct, err)
			}
		}
		fails.check(t, "our decryption of OpenSSL ciphertexts", len(reqs))
		t.Logf("%d OpenSSL ciphertexts over %d keys decrypted", len(reqs), len(keys))
	})

	t.Run("t all zero refused by OpenSSL too (B4)", func(t *testing.T) {
		stdDir := t.TempDir()
		writeInteropKeys(t, stdDir, []*sm2.PrivateKey{stdKey(t)})
		der, err := sm2.PlainCiphertext2ASN1(zeroTCiphertext(t), sm2.C1C3C2)
		if err != nil {
			t.Fatal(err)
		}
		control, err := hex.DecodeString(stdEncASN1)
		if err != nil {
			t.Fatal(err)
		}
		ans := runSM2Batch(t, bin, []string{
			fmt.Sprintf("D %s %x", filepath.Join(stdDir, "key-00.pem"), der),
			fmt.Sprintf("D %s %x", filepath.Join(stdDir, "key-00.pem"), control),
		})
		if !strings.HasPrefix(ans[0], "ERR ") {
			t.Errorf("OpenSSL decrypted a ciphertext whose t is all zero: %q", ans[0])
		}
		if ans[1] != "OK "+hex.EncodeToString([]byte(stdEncPlain)) {
			t.Errorf("control: OpenSSL on the standard's example says %q", ans[1])
		}
	})
}

// refereeBatch is the input of testdata/sm-crypto/referee.js.
type refereeBatch struct {
	Decrypt []refereeDecrypt `json:"decrypt"`
	Encrypt []refereeEncrypt `json:"encrypt"`
}

type refereeDecrypt struct {
	D  string `json:"d"`
	CT string `json:"ct"`
}

type refereeEncrypt struct {
	Pub string `json:"pub"`
	PT  string `json:"pt"`
}

type refereeResult struct {
	Version string    `json:"version"`
	Decrypt []*string `json:"decrypt"`
	Encrypt []string  `json:"encrypt"`
}

// runSMCrypto runs the sm-crypto referee on batch.
func runSMCrypto(t *testing.T, batch refereeBatch) refereeResult {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		needReferee(t, "node not found (%v): install Node.js and run scripts/deps.sh for the sm-crypto referee", err)
	}
	if _, err := os.Stat("testdata/sm-crypto/node_modules/sm-crypto/package.json"); err != nil {
		needReferee(t, "sm-crypto is not installed (%v): run scripts/deps.sh (npm ci --prefix token/smcrypto/testdata/sm-crypto)", err)
	}
	in, err := json.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "batch.json", in)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/sm-crypto/referee.js", filepath.Join(dir, "batch.json"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sm-crypto referee: %v\n%s", err, stderr.Bytes())
	}
	var res refereeResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("sm-crypto referee output: %v", err)
	}
	if res.Version != "0.5.8" || len(res.Decrypt) != len(batch.Decrypt) || len(res.Encrypt) != len(batch.Encrypt) {
		t.Fatalf("sm-crypto referee: version %q, %d/%d decryptions, %d/%d encryptions",
			res.Version, len(res.Decrypt), len(batch.Decrypt), len(res.Encrypt), len(batch.Encrypt))
	}
	return res
}

func TestSM2InteropSMCrypto(t *testing.T) {
	keys := interopKeySet(t)
	var batch refereeBatch
	var toPT, fromPT [][]byte
	for j, k := range keys {
		d := hex.EncodeToString(smcrypto.MarshalSM2Private(k))
		for i := range interopToSMCrypto {
			pt := interopMessage(t, j, i)
			ct, err := smcrypto.SM2Encrypt(&k.PublicKey, pt, smcrypto.EncodingRaw)
			if err != nil {
				t.Fatal(err)
			}
			// sm-crypto writes and reads C1 as x ‖ y, without 0x04.
			batch.Decrypt = append(batch.Decrypt, refereeDecrypt{D: d, CT: hex.EncodeToString(ct[1:])})
			toPT = append(toPT, pt)
		}
		pub := "04" + hex.EncodeToString(scalar(k.X)) + hex.EncodeToString(scalar(k.Y))
		for i := range interopFromSMCrypt {
			pt := interopMessage(t, j, i)
			batch.Encrypt = append(batch.Encrypt, refereeEncrypt{Pub: pub, PT: hex.EncodeToString(pt)})
			fromPT = append(fromPT, pt)
		}
	}
	res := runSMCrypto(t, batch)

	var toFails interopFailures
	for n, got := range res.Decrypt {
		if got == nil || *got != hex.EncodeToString(toPT[n]) {
			toFails.add("key %d, %d-byte plaintext, ciphertext 04%s: sm-crypto says %v", n/interopToSMCrypto, len(toPT[n]), batch.Decrypt[n].CT, got)
		}
	}
	toFails.check(t, "sm-crypto decryption of our raw C1C3C2 ciphertexts", len(res.Decrypt))

	var fromFails interopFailures
	tzero := 0
	for n, s := range res.Encrypt {
		raw, err := hex.DecodeString("04" + s)
		if err != nil || len(raw) != 97+len(fromPT[n]) {
			fromFails.add("sm-crypto ciphertext %q is malformed", s)
			continue
		}
		kind, err := checkFromReferee(keys[n/interopFromSMCrypt], raw, raw, fromPT[n])
		if err != nil {
			fromFails.add("key %d, %d-byte plaintext, ciphertext %x: %v", n/interopFromSMCrypt, len(fromPT[n]), raw, err)
		}
		if kind == "tzero" {
			tzero++
		}
	}
	fromFails.check(t, "our decryption of sm-crypto ciphertexts", len(res.Encrypt))
	t.Logf("%d ciphertexts to sm-crypto, %d from it (%d refused for an all-zero t, GB/T 32918.4 B4), %d keys",
		len(res.Decrypt), len(res.Encrypt), tzero, len(keys))
}
