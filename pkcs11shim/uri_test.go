package pkcs11shim

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func uriUintPtr(n uint) *uint { return &n }

func TestParseURIValid(t *testing.T) {
	tests := []struct {
		in   string
		want URI
	}{
		{"pkcs11:", URI{}},
		{"PKCS11:", URI{}},
		{"Pkcs11:?", URI{}},
		{
			"pkcs11:token=bank;object=receipt;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
			URI{Token: "bank", Object: "receipt", Type: "private", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/run/pin"},
		},
		{"pkcs11:token=My%20Token;id=%A1%B2", URI{Token: "My Token", ID: []byte{0xa1, 0xb2}}},
		{"pkcs11:serial=0123456789abcdef;x-vendor=1", URI{Serial: "0123456789abcdef"}},
		{"pkcs11:id=%01%02", URI{ID: []byte{1, 2}}},
		{"pkcs11:id=%00", URI{ID: []byte{0}}},
		{"pkcs11:id=ab%ff", URI{ID: []byte{'a', 'b', 0xff}}},
		{"pkcs11:id=%a1%B2", URI{ID: []byte{0xa1, 0xb2}}},
		{
			"pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft;library-version=1.23;slot-description=Slot%201;slot-manufacturer=Acme;slot-id=3",
			URI{LibraryManufacturer: "Snake Oil, Inc.", LibraryDescription: "Soft", LibraryVersion: "1.23", SlotDescription: "Slot 1", SlotManufacturer: "Acme", SlotID: uriUintPtr(3)},
		},
		{"pkcs11:library-version=7", URI{LibraryVersion: "7"}},
		{"pkcs11:library-version=255.0", URI{LibraryVersion: "255.0"}},
		{"pkcs11:slot-id=0", URI{SlotID: uriUintPtr(0)}},
		{"pkcs11:slot-id=007", URI{SlotID: uriUintPtr(7)}},
		{"pkcs11:slot-id=18446744073709551615", URI{SlotID: uriUintPtr(^uint(0))}},
		{"pkcs11:type=public", URI{Type: "public"}},
		{"pkcs11:type=secret-key", URI{Type: "secret-key"}},
		{"pkcs11:type=data", URI{Type: "data"}},
		{"pkcs11:type=%70rivate", URI{Type: "private"}},
		{"pkcs11:object=a=b&c:d@e!$'()*+,[]~", URI{Object: "a=b&c:d@e!$'()*+,[]~"}},
		{"pkcs11:object=caf%C3%A9%2Fx", URI{Object: "café/x"}},
		{"pkcs11:object=semi%3Bcolon%3Fq", URI{Object: "semi;colon?q"}},
		{"pkcs11:?module-name=softhsm2", URI{ModuleName: "softhsm2"}},
		{"pkcs11:?pin-source=env:KEYWARD_PIN", URI{PINSource: "env:KEYWARD_PIN"}},
		{"pkcs11:?pin-source=env:_x9", URI{PINSource: "env:_x9"}},
		{"pkcs11:?pin-source=/run/pin", URI{PINSource: "/run/pin"}},
		{"pkcs11:?pin-source=file:%2Frun%2Fp%20in", URI{PINSource: "file:/run/p in"}},
		{"pkcs11:?pin-source=file:///run/pin", URI{PINSource: "file:///run/pin"}},
		{"pkcs11:?pin-source=prompt", URI{PINSource: "prompt"}},
		{"pkcs11:?pin-source=prompt:User%20PIN", URI{PINSource: "prompt:User PIN"}},
		{"pkcs11:?module-path=/opt/a?b|c/lib.so", URI{ModulePath: "/opt/a?b|c/lib.so"}},
		{"pkcs11:?x-a=1&x-a=2&x-b=", URI{}}, // vendor query attributes may repeat (RFC 7512)
		{"pkcs11:x-Vendor_1=;token=t", URI{Token: "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURI(tt.in)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("ParseURI(%q) =\n%#v\nwant\n%#v", tt.in, *got, tt.want)
			}
			again, err := ParseURI(got.String())
			if err != nil {
				t.Fatalf("ParseURI(%q) (from String): %v", got.String(), err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Errorf("round trip through %q:\n%#v\nwant\n%#v", got.String(), *again, *got)
			}
		})
	}
}

// TestParseURIRFCExample parses the longest example of RFC 7512, section 3.
func TestParseURIRFCExample(t *testing.T) {
	in := "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin"
	if _, err := ParseURI(in); err == nil || !strings.Contains(err.Error(), `"serial" has an empty value`) {
		t.Fatalf("ParseURI with serial= = %v, want the empty-value error", err)
	}
	u, err := ParseURI(strings.Replace(in, ";serial=", "", 1))
	if err != nil {
		t.Fatal(err)
	}
	want := URI{
		Token:        "The Software PKCS#11 Softtoken",
		Manufacturer: "Snake Oil, Inc.",
		Model:        "1.0",
		Object:       "my-certificate",
		Type:         "cert",
		ID:           []byte{0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91},
		PINSource:    "file:/etc/token_pin",
	}
	if !reflect.DeepEqual(*u, want) {
		t.Errorf("got %#v\nwant %#v", *u, want)
	}
}

func TestParseURIInvalid(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// Scheme.
		{"", `must start with "pkcs11:"`},
		{"pkcs11", `must start with "pkcs11:"`},
		{"pkcs12:token=a", `must start with "pkcs11:"`},
		{" pkcs11:token=a", `must start with "pkcs11:"`},
		{"file:/run/pin", `must start with "pkcs11:"`},

		// Structure.
		{"pkcs11:token=a#frag", "fragment"},
		{"pkcs11:#", "fragment"},
		{"pkcs11:?module-name=a#b", "fragment"},
		{"pkcs11:;", `empty path attribute; remove the stray ";"`},
		{"pkcs11:token=a;", "empty path attribute"},
		{"pkcs11:token=a;;object=b", "empty path attribute"},
		{"pkcs11:?&", `empty query attribute; remove the stray "&"`},
		{"pkcs11:?module-name=a&", "empty query attribute"},
		{"pkcs11:token", `path attribute "token" has no "="`},
		{"pkcs11:?module-name", `query attribute #1 has no "="`},
		{"pkcs11:=a", "empty attribute name in path attribute #1"},
		{"pkcs11:?module-name=a&=b", "empty attribute name in query attribute #2"},
		{"pkcs11:tok%65n=a", `invalid attribute name "tok%65n"`},
		{"pkcs11:token=a; object=b", `invalid attribute name " object"`},
		{"pkcs11://token=a", `invalid attribute name "//token"`},

		// Unknown attributes.
		{"pkcs11:label=a", `unknown path attribute "label"`},
		{"pkcs11:x-=a", `unknown path attribute "x-"`},
		{"pkcs11:TOKEN=a", `attribute names are lower case: write "token"`},
		{"pkcs11:?Module-Path=/a", `attribute names are lower case: write "module-path"`},
		{"pkcs11:module-path=/a", `"module-path" is a query attribute, not a path attribute; put it after "?"`},
		{"pkcs11:?token=a", `"token" is a path attribute, not a query attribute; put it before "?"`},
		{"pkcs11:?pin=1234", `unknown query attribute "pin"`},

		// Duplicates.
		{"pkcs11:token=a;token=b", `attribute "token" given twice`},
		{"pkcs11:token=a;object=b;token=a", `attribute "token" given twice`},
		{"pkcs11:slot-id=1;slot-id=1", `attribute "slot-id" given twice`},
		{"pkcs11:x-v=1;x-v=2", `attribute "x-v" given twice`},
		{"pkcs11:?pin-source=env:A&pin-source=env:B", `attribute "pin-source" given twice`},
		{"pkcs11:?module-path=/a&module-path=/a", `attribute "module-path" given twice`},

		// Empty values.
		{"pkcs11:token=", `attribute "token" has an empty value`},
		{"pkcs11:id=", `attribute "id" has an empty value`},
		{"pkcs11:slot-id=", `attribute "slot-id" has an empty value`},
		{"pkcs11:?module-path=", `attribute "module-path" has an empty value`},
		{"pkcs11:?pin-source=", `attribute "pin-source" has an empty value`},

		// Percent-encoding and characters.
		{"pkcs11:token=%zz", `attribute "token": invalid percent-encoding "%zz"`},
		{"pkcs11:token=a%4", `attribute "token": invalid percent-encoding "%4"`},
		{"pkcs11:token=a%", `attribute "token": invalid percent-encoding "%"`},
		{"pkcs11:id=%0g", `attribute "id": invalid percent-encoding "%0g"`},
		{"pkcs11:x-v=%q1", `attribute "x-v": invalid percent-encoding "%q1"`},
		{"pkcs11:?module-path=/a%2", `attribute "module-path": invalid percent-encoding "%2"`},
		{"pkcs11:?pin-source=file:/a%zz", `attribute "pin-source": invalid percent-encoding; "%" must be followed by two hex digits`},
		{"pkcs11:token=My Token", `attribute "token": character ' ' must be percent-encoded as %20`},
		{"pkcs11:object=a/b", `attribute "object": character '/' must be percent-encoded as %2F`},
		{"pkcs11:object=a|b", `attribute "object": character '|' must be percent-encoded as %7C`},
		{"pkcs11:object=caf\xc3\xa9", `attribute "object": byte 0xC3 must be percent-encoded as %C3`},
		{"pkcs11:object=a\nb", `attribute "object": byte 0x0A must be percent-encoded as %0A`},
		{"pkcs11:?module-name=a;b", `attribute "module-name": character ';' must be percent-encoded as %3B`},
		{"pkcs11:?pin-source=file:/a b", `attribute "pin-source": byte 8 of the value must be percent-encoded as %20`},
		{"pkcs11:object=a%00b", `attribute "object" contains a NUL byte`},
		{"pkcs11:token=%FF", `attribute "token" is not valid UTF-8`},
		{"pkcs11:?module-path=/usr/lib/a.so%00x", `attribute "module-path" contains a NUL byte`},

		// type.
		{"pkcs11:type=privat", `type "privat" is not one of public, private, cert, secret-key, data`},
		{"pkcs11:type=PRIVATE", `type "PRIVATE" is not one of`},
		{"pkcs11:type=secret", `type "secret" is not one of`},

		// slot-id.
		{"pkcs11:slot-id=-1", `slot-id "-1" must be a decimal unsigned integer`},
		{"pkcs11:slot-id=+1", `slot-id "+1" must be a decimal unsigned integer`},
		{"pkcs11:slot-id=0x10", `slot-id "0x10" must be a decimal unsigned integer`},
		{"pkcs11:slot-id=1_000", `slot-id "1_000" must be a decimal unsigned integer`},
		{"pkcs11:slot-id=%201", `slot-id " 1" must be a decimal unsigned integer`},
		{"pkcs11:slot-id=18446744073709551616", `slot-id "18446744073709551616" is out of range`},

		// library-version.
		{"pkcs11:library-version=v1", `library-version "v1" must be M or M.N`},
		{"pkcs11:library-version=1.", `library-version "1." must be M or M.N`},
		{"pkcs11:library-version=.1", `library-version ".1" must be M or M.N`},
		{"pkcs11:library-version=1.2.3", `library-version "1.2.3" must be M or M.N`},
		{"pkcs11:library-version=1.-2", `library-version "1.-2" must be M or M.N`},
		{"pkcs11:library-version=256", `library-version "256" is out of range`},
		{"pkcs11:library-version=1.256", `library-version "1.256" is out of range`},

		// module-path and module-name.
		{"pkcs11:?module-path=libsofthsm2.so", `module-path must be an absolute path`},
		{"pkcs11:?module-path=./libsofthsm2.so", `module-path must be an absolute path`},
		{"pkcs11:?module-name=softhsm2&module-path=/usr/lib/softhsm/libsofthsm2.so", "module-name and module-path are both given"},
		{"pkcs11:?module-path=/usr/lib/softhsm/libsofthsm2.so&module-name=softhsm2", "conflicting selectors"},
		{"pkcs11:?module-name=../lib/evil", `module-name "../lib/evil" must be a bare library name`},
		{"pkcs11:?module-name=a%5Cb", `module-name "a\\b" must be a bare library name`},

		// pin-value and pin-source.
		{"pkcs11:?pin-value=1234", "pin-value is not supported"},
		{"pkcs11:token=a?pin-value=1234", "use pin-source=file:/abs/path or pin-source=env:NAME"},
		{"pkcs11:pin-value=1234", "pin-value is not supported"},
		{"pkcs11:?PIN-VALUE=1234", "pin-value is not supported"},
		{"pkcs11:?pin-value", "pin-value is not supported"},
		// The pin-source grammar is pkcs11shim.ParsePINSource (pinsource_test.go).
		{"pkcs11:?pin-source=1234", "pin-source: unrecognised PIN source; use file:/abs/path, /abs/path, env:NAME or prompt"},
		{"pkcs11:?pin-source=run/pin", "pin-source: unrecognised PIN source"},
		{"pkcs11:?pin-source=|/bin/get-pin", "pin-source: a program (|command) is not supported"},
		{"pkcs11:?pin-source=file:run/pin", "pin-source: file: source needs an absolute path"},
		{"pkcs11:?pin-source=file:", "pin-source: file: source needs an absolute path"},
		{"pkcs11:?pin-source=file://host/run/pin", "pin-source: file:// names a host"},
		{"pkcs11:?pin-source=file://localhost/run/pin", "pin-source: file:// names a host"},
		{"pkcs11:?pin-source=env:", "pin-source: invalid environment variable name in env:NAME"},
		{"pkcs11:?pin-source=env:1PIN", "pin-source: invalid environment variable name in env:NAME"},
		{"pkcs11:?pin-source=env:KEYWARD-PIN", "pin-source: invalid environment variable name in env:NAME"},
		{"pkcs11:?pin-source=env:A%3DB", "pin-source: invalid environment variable name in env:NAME"},
		{"pkcs11:?pin-source=file:/run/pin%00", `attribute "pin-source" contains a NUL byte`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseURI(tt.in)
			if err == nil {
				t.Fatalf("ParseURI(%q) = %#v, want error containing %q", tt.in, *u, tt.want)
			}
			if u != nil {
				t.Errorf("ParseURI(%q) returned a URI with its error", tt.in)
			}
			if !errors.Is(err, ErrInvalidURI) {
				t.Errorf("ParseURI(%q) error %v does not wrap ErrInvalidURI", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseURI(%q) error\n%v\nwant it to contain\n%s", tt.in, err, tt.want)
			}
		})
	}
}

// TestParseURINoSecretsInErrors checks requirement R-TOK-4: whatever else
// is wrong with a URI, its error never repeats a pin-value, nor a value
// that might be a PIN pasted where a pin-source or attribute belongs.
func TestParseURINoSecretsInErrors(t *testing.T) {
	const secret = "s3cr3tPIN"
	for _, in := range []string{
		"pkcs11:?pin-value=" + secret,
		"pkcs11:?pin-value=" + secret + "&pin-source=env:X",
		"pkcs11:type=bogus?pin-value=" + secret,
		"pkcs11:token=a;token=b?pin-value=" + secret,
		"pkcs11:token=a#x?pin-value=" + secret,
		"pkcs11:?pin-value=%zz" + secret,
		"pkcs11:?pin-value=" + secret + "#",
		"pkcs11:?pin-value=" + secret + "&pin-value=" + secret,
		"pkcs11:pin-value=" + secret,
		"pkcs11:?Pin-Value=" + secret,
		"pkcs11:?pin-source=" + secret,
		"pkcs11:?pin-source=" + secret + "%zz",
		"pkcs11:?pin-source=" + secret + "%4",
		"pkcs11:?pin-source=" + secret + "%20",
		"pkcs11:?pin-source=" + secret + " x",
		"pkcs11:?pin-source=env:" + secret + "-",
		"pkcs11:?pin-source=file:" + secret,
		"pkcs11:?x-pin=" + secret + "%z",
		"pkcs11:?" + secret,
		"pkcs11:?module-name=a&" + secret,
		"pkcs11:" + secret + "#" + secret,
	} {
		_, err := ParseURI(in)
		if err == nil {
			t.Errorf("ParseURI(%q) succeeded, want an error", in)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseURI(%q) error repeats the secret: %v", in, err)
		}
	}
}

func TestURIString(t *testing.T) {
	tests := []struct {
		u    URI
		want string
	}{
		{URI{}, "pkcs11:"},
		{
			URI{Token: "bank", Object: "receipt", Type: "private", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/run/pin"},
			"pkcs11:token=bank;object=receipt;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
		},
		{URI{Token: "My Token", ID: []byte{0xa1, 0xb2}}, "pkcs11:token=My%20Token;id=%A1%B2"},
		{URI{ID: []byte("ab")}, "pkcs11:id=%61%62"},
		{URI{PINSource: "env:KEYWARD_PIN"}, "pkcs11:?pin-source=env:KEYWARD_PIN"},
		{URI{ModuleName: "softhsm2"}, "pkcs11:?module-name=softhsm2"},
		{URI{Object: "a+b;c&d=e/f?g%h#i:j~k"}, "pkcs11:object=a%2Bb%3Bc%26d%3De%2Ff%3Fg%25h%23i%3Aj~k"},
		{URI{ModulePath: "/opt/a b&c+d?e"}, "pkcs11:?module-path=/opt/a%20b%26c%2Bd%3Fe"},
		{URI{Object: "café"}, "pkcs11:object=caf%C3%A9"},
		{URI{SlotID: uriUintPtr(0)}, "pkcs11:slot-id=0"},
		{
			// Every field, in canonical order (Type after ID, query last),
			// even though ParseURI would refuse both module selectors.
			URI{
				Type: "cert", ID: []byte{1}, Object: "o", SlotID: uriUintPtr(4),
				SlotManufacturer: "sm", SlotDescription: "sd", LibraryVersion: "2.6",
				LibraryDescription: "ld", LibraryManufacturer: "lm", Model: "m",
				Serial: "s", Manufacturer: "mf", Token: "t",
				PINSource: "/run/pin", ModuleName: "n", ModulePath: "/p",
			},
			"pkcs11:token=t;manufacturer=mf;serial=s;model=m;library-manufacturer=lm;library-description=ld;library-version=2.6;slot-description=sd;slot-manufacturer=sm;slot-id=4;object=o;id=%01;type=cert?module-path=/p&module-name=n&pin-source=/run/pin",
		},
	}
	for _, tt := range tests {
		if got := tt.u.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// TestURIStringCanonical checks that equivalent spellings of a URI share
// one canonical form.
func TestURIStringCanonical(t *testing.T) {
	const want = "pkcs11:token=My%20Token;object=k;id=%01%AB;type=private?module-path=/usr/lib/p11.so&pin-source=env:PIN"
	for _, in := range []string{
		want,
		"PKCS11:type=private;id=%01%ab;object=k;token=My%20Token?pin-source=env:PIN&module-path=/usr/lib/p11.so",
		"pkcs11:x-a=1;type=%70rivate;object=%6B;token=My%20Token;id=%01%AB?x-b=2&module-path=%2Fusr%2Flib%2Fp11.so&pin-source=env%3APIN&x-b=3",
	} {
		u, err := ParseURI(in)
		if err != nil {
			t.Fatalf("ParseURI(%q): %v", in, err)
		}
		if got := u.String(); got != want {
			t.Errorf("ParseURI(%q).String() = %q, want %q", in, got, want)
		}
	}
}

// TestParseURIAllAttributes checks that every attribute ParseURI knows is
// also written by String.
func TestParseURIAllAttributes(t *testing.T) {
	for name := range uriPathNames {
		v := "v"
		switch name {
		case "library-version":
			v = "1.2"
		case "slot-id":
			v = "1"
		case "type":
			v = "data"
		case "id":
			v = "%76" // id is always fully percent-encoded
		}
		in := "pkcs11:" + name + "=" + v
		u, err := ParseURI(in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", in, err)
			continue
		}
		if got := u.String(); got != in {
			t.Errorf("ParseURI(%q).String() = %q", in, got)
		}
	}
	for name := range uriQueryNames {
		if name == "pin-value" {
			continue
		}
		in := "pkcs11:?" + name + "=/a"
		if name == "module-name" {
			in = "pkcs11:?" + name + "=a"
		}
		u, err := ParseURI(in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", in, err)
			continue
		}
		if got := u.String(); got != in {
			t.Errorf("ParseURI(%q).String() = %q", in, got)
		}
	}
}

func ExampleParseURI() {
	u, err := ParseURI("pkcs11:token=bank;object=receipt;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(u.Token, u.Object, u.Type, u.ModulePath, u.PINSource)

	_, err = ParseURI("pkcs11:token=bank?pin-value=1234")
	fmt.Println(errors.Is(err, ErrInvalidURI))
	// Output:
	// bank receipt private /usr/lib/softhsm/libsofthsm2.so file:/run/pin
	// true
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=bank;object=receipt;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
		"pkcs11:token=My%20Token;id=%A1%B2",
		"pkcs11:",
		"pkcs11:serial=0123456789abcdef;x-vendor=1",
		"pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91?pin-source=file:/etc/token_pin",
		"pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft;library-version=1.23;slot-description=Slot%201;slot-manufacturer=Acme;slot-id=3",
		"pkcs11:?module-name=softhsm2&pin-source=env:KEYWARD_PIN&x-a=1&x-a=2",
		"pkcs11:object=a=b&c:d@e!$'()*+,[]~;type=secret-key",
		"pkcs11:?pin-value=1234",
		"pkcs11:token=a%4",
		"pkcs11:token=a#b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if u != nil {
				t.Fatalf("ParseURI(%q) returned both a URI and %v", s, err)
			}
			if !errors.Is(err, ErrInvalidURI) {
				t.Fatalf("ParseURI(%q) error %v does not wrap ErrInvalidURI", s, err)
			}
			return
		}
		canon := u.String()
		again, err := ParseURI(canon)
		if err != nil {
			t.Fatalf("ParseURI(%q) ok, but its String %q does not parse: %v", s, canon, err)
		}
		if !reflect.DeepEqual(again, u) {
			t.Fatalf("round trip of %q through %q:\n%#v\nwant\n%#v", s, canon, *again, *u)
		}
		if again.String() != canon {
			t.Fatalf("String not stable: %q then %q", canon, again.String())
		}
	})
}
