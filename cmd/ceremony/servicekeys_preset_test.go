package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/pkcs11shim"
)

// service_keys: true (issue 15 item 1) adds exactly keysvc's service keys
// (keysvc.ServiceKeySpecs: label, type, exact usage), each backup: true,
// after the listed keys; a listed key under a service key's label is
// refused, naming the preset.
func TestKeygenServiceKeysPreset(t *testing.T) {
	dir := t.TempDir()
	head := "module: /usr/lib/softhsm/libsofthsm2.so\nofficers: [A, B]\ntranscript: {dir: out}\npin_guard: g.db\ntoken: {label: t, user_pin: prompt}\n"
	var c keygenConfig
	c.lax = true // as on an approver's machine: no module, guard or inputs needed here
	if err := parseConfig([]byte(head+"service_keys: true\nkeys:\n  - {label: bank-kek, type: aes-256, usage: [wrap, unwrap], backup: true}\n"), "k.yaml", dir, &c, &c.common); err != nil {
		t.Fatal(err)
	}
	specs := keysvc.ServiceKeySpecs()
	if len(c.Keys) != 1+len(specs) || c.Keys[0].Label != "bank-kek" {
		t.Fatalf("keys after the preset: %+v", c.Keys)
	}
	for i, ks := range specs {
		k := c.Keys[1+i]
		if k.Label != ks.Label || k.kt != ks.Type || k.usage != ks.Usage || !k.Backup {
			t.Errorf("preset key %d: %s %v usage %b backup %v, want %s %v usage %b backup true", i, k.Label, k.kt, k.usage, k.Backup, ks.Label, ks.Type, ks.Usage)
		}
		if !k.usage.Has(pkcs11shim.UsageExact) {
			t.Errorf("%s: usage not exact", k.Label)
		}
		// Epoch 1's KEKs must be destroyable, or the first KEK rotation
		// stops at retirement; nothing else is.
		if want := ks.Label == keysvc.KEKLabel || ks.Label == keysvc.SMKEKLabel; k.Destroyable != want {
			t.Errorf("%s: destroyable %v, want %v", k.Label, k.Destroyable, want)
		}
	}
	var only keygenConfig
	only.lax = true
	if err := parseConfig([]byte(head+"service_keys: true\n"), "k.yaml", dir, &only, &only.common); err != nil || len(only.Keys) != len(specs) {
		t.Fatalf("service_keys alone: %v, %d keys", err, len(only.Keys))
	}
	var dup keygenConfig
	dup.lax = true
	err := parseConfig([]byte(head+"service_keys: true\nkeys:\n  - {label: keysvc-kek, type: aes-256, backup: true}\n"), "k.yaml", dir, &dup, &dup.common)
	if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), "keys[1].label") || !strings.Contains(err.Error(), "service_keys: true already makes") {
		t.Fatalf("a listed keysvc-kek beside the preset: %v", err)
	}
	var none keygenConfig
	none.lax = true
	err = parseConfig([]byte(head), "k.yaml", dir, &none, &none.common)
	if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), "service_keys: true") {
		t.Fatalf("neither keys nor the preset: %v", err)
	}
	if !slices.Equal(keysvc.ServiceKeyLabels, func() []string {
		var l []string
		for _, ks := range specs {
			l = append(l, ks.Label)
		}
		return l
	}()) {
		t.Fatalf("ServiceKeyLabels %v and ServiceKeySpecs disagree", keysvc.ServiceKeyLabels)
	}
}
