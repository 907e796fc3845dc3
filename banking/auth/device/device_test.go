package device_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/auth/internal/authtest"
	"github.com/keyward/keyward/banking/store"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func newRegistry(t *testing.T, max int) (*device.Registry, *authtest.Clock, store.DB) {
	t.Helper()
	clk := authtest.NewClock()
	db := authtest.MustOpenDB(t)
	r, err := device.New(device.Config{DB: db, MaxDevices: max, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r, clk, db
}

func TestSameNetwork(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.254", true},
		{"192.0.2.1", "192.0.3.1", false},
		{"::ffff:192.0.2.1", "192.0.2.9", true},
		{"2001:db8:1:2::1", "2001:db8:1:2:abcd::9", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"192.0.2.1", "2001:db8::1", false},
		{"fe80::1%eth0", "fe80::2", true},
	} {
		if got := device.SameNetwork(ip(tc.a), ip(tc.b)); got != tc.want {
			t.Errorf("SameNetwork(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestAssess(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newRegistry(t, 0)
	a, err := r.Assess(ctx, "c1", "dev-a", "iOS 17", ip("192.0.2.10"))
	if err != nil || !a.StepUp || !reflect.DeepEqual(a.Reasons, []device.Reason{device.ReasonNewDevice}) {
		t.Fatalf("unknown device: %+v, %v", a, err)
	}
	if err := r.Remember(ctx, "c1", "dev-a", "iOS 17", ip("192.0.2.10")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		customer, dev, os, addr string
		reasons                 []device.Reason
	}{
		{"c1", "dev-a", "iOS 17", "192.0.2.10", nil},
		{"c1", "dev-a", " iOS 17 ", "192.0.2.200", nil}, // same /24, spaces trimmed
		{"c1", "dev-a", "iOS 18", "192.0.2.10", []device.Reason{device.ReasonOSChanged}},
		{"c1", "dev-a", "iOS 17", "198.51.100.7", []device.Reason{device.ReasonIPChanged}},
		{"c1", "dev-a", "Android 14", "2001:db8::1", []device.Reason{device.ReasonOSChanged, device.ReasonIPChanged}},
		{"c1", "dev-b", "iOS 17", "192.0.2.10", []device.Reason{device.ReasonNewDevice}},
		{"c2", "dev-a", "iOS 17", "192.0.2.10", []device.Reason{device.ReasonNewDevice}}, // per customer
	} {
		a, err := r.Assess(ctx, tc.customer, tc.dev, tc.os, ip(tc.addr))
		if err != nil || a.StepUp != (tc.reasons != nil) || !reflect.DeepEqual(a.Reasons, tc.reasons) {
			t.Errorf("Assess(%s,%s,%q,%s) = %+v, %v; want %v", tc.customer, tc.dev, tc.os, tc.addr, a, err, tc.reasons)
		}
	}
	// After the step-up, remembering the new address makes it known.
	r.Remember(ctx, "c1", "dev-a", "iOS 17", ip("198.51.100.7"))
	if a, _ := r.Assess(ctx, "c1", "dev-a", "iOS 17", ip("198.51.100.8")); a.StepUp {
		t.Fatalf("after Remember: %+v", a)
	}
	if a, _ := r.Assess(ctx, "c1", "dev-a", "iOS 17", ip("192.0.2.10")); !a.StepUp {
		t.Fatal("the old network is no longer the last one: step-up expected")
	}
}

func TestDeviceIDStoredHashed(t *testing.T) {
	ctx := context.Background()
	r, _, db := newRegistry(t, 0)
	const id = "install-7f3a9c-secret-ish"
	r.Remember(ctx, "c1", id, "Windows 11", ip("192.0.2.1"))
	h := sha256.Sum256([]byte(id))
	db.View(func(tx store.Tx) error {
		return tx.Bucket([]byte("auth-devices")).ForEach(func(k, v []byte) error {
			if strings.Contains(string(k)+string(v), id) {
				t.Errorf("device id stored in clear")
			}
			if !strings.HasSuffix(string(k), fmt.Sprintf("%x", h)) {
				t.Errorf("key %q is not keyed by SHA-256(id)", k)
			}
			return nil
		})
	})
}

func TestMaxDevicesListForget(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRegistry(t, 3)
	for i := range 5 {
		r.Remember(ctx, "c1", fmt.Sprintf("dev-%d", i), "Android 14", ip("192.0.2.1"))
		clk.Advance(time.Hour)
	}
	list, err := r.List(ctx, "c1")
	if err != nil || len(list) != 3 {
		t.Fatalf("List = %v, %v", list, err)
	}
	// Least recently seen went first: dev-0 and dev-1 are new again.
	for i, want := range []bool{true, true, false, false, false} {
		a, _ := r.Assess(ctx, "c1", fmt.Sprintf("dev-%d", i), "Android 14", ip("192.0.2.1"))
		if a.StepUp != want {
			t.Errorf("dev-%d step-up %v, want %v", i, a.StepUp, want)
		}
	}
	if !list[0].LastSeen.After(list[1].LastSeen) || list[0].FirstSeen.IsZero() {
		t.Fatalf("order %+v", list)
	}
	if err := r.Forget(ctx, "c1", list[0].Ref); err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Assess(ctx, "c1", "dev-4", "Android 14", ip("192.0.2.1")); !a.StepUp {
		t.Fatal("forgotten device still known")
	}
	if err := r.Forget(ctx, "c1", list[0].Ref); !errors.Is(err, device.ErrNotFound) {
		t.Fatalf("second Forget: %v", err)
	}
	if n, err := r.ForgetAll(ctx, "c1"); err != nil || n != 2 {
		t.Fatalf("ForgetAll = %d, %v", n, err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newRegistry(t, 0)
	for _, tc := range []struct {
		c, d, os string
		addr     netip.Addr
	}{
		{"", "d", "iOS 17", ip("192.0.2.1")},
		{"c", "", "iOS 17", ip("192.0.2.1")},
		{"c", "d", "  ", ip("192.0.2.1")},
		{"c", "d", "iOS\n17", ip("192.0.2.1")},
		{"c", "d", "iOS 17", netip.Addr{}},
	} {
		if _, err := r.Assess(ctx, tc.c, tc.d, tc.os, tc.addr); !errors.Is(err, device.ErrBadInput) {
			t.Errorf("Assess(%+v) = %v", tc, err)
		}
		if err := r.Remember(ctx, tc.c, tc.d, tc.os, tc.addr); !errors.Is(err, device.ErrBadInput) {
			t.Errorf("Remember(%+v) = %v", tc, err)
		}
	}
	if _, err := device.New(device.Config{}); !errors.Is(err, device.ErrConfig) {
		t.Fatal(err)
	}
}
