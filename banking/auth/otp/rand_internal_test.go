package otp

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func TestRandomDigitsRejectsTheIncompleteBlock(t *testing.T) {
	// 4294000000 = 4294·10^6 is the first value of the incomplete block:
	// it must be rejected, and 4293999999 accepted as "999999".
	src := bytes.NewReader([]byte{
		0xff, 0xff, 0xff, 0xff, // 4294967295: rejected
		0xff, 0xf1, 0x3d, 0x80, // 4294000000: rejected
		0xff, 0xf1, 0x3d, 0x7f, // 4293999999: accepted
	})
	got, err := randomDigits(src, 6)
	if err != nil || string(got) != "999999" {
		t.Fatalf("got %q, %v", got, err)
	}
	got, err = randomDigits(bytes.NewReader([]byte{0, 0, 0, 42}), 6)
	if err != nil || string(got) != "000042" {
		t.Fatalf("leading zeros: %q, %v", got, err)
	}
	if _, err := randomDigits(bytes.NewReader([]byte{1, 2}), 6); err == nil {
		t.Fatal("short source accepted")
	}
}

func TestRandomDigitsSpread(t *testing.T) {
	// A coarse check that every position uses every digit about equally
	// (catches a fixed digit or a wrong modulus, not subtle bias; the
	// rejection rule above is what removes the bias).
	const n = 20000
	var counts [6][10]int
	for range n {
		c, err := randomDigits(rand.Reader, 6)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range c {
			counts[i][d-'0']++
		}
	}
	for i := range counts {
		for d, k := range counts[i] {
			if k < n/10*8/10 || k > n/10*12/10 {
				t.Errorf("position %d digit %d: %d of %d", i, d, k, n)
			}
		}
	}
}
