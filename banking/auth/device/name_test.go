package device_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking/auth/device"
)

// TestRememberNamed: a device's name is kept, shown by List under the
// Ref RefOf gives, kept when a later Remember names none, and refused when
// too long or holding control or bidi formatting characters.
func TestRememberNamed(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRegistry(t, 0)
	if err := r.RememberNamed(ctx, "c1", "dev-1", "小王的手机", "Android 14", ip("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1)
	if err := r.Remember(ctx, "c1", "dev-1", "Android 15", ip("192.0.2.2")); err != nil {
		t.Fatal(err)
	}
	list, err := r.List(ctx, "c1")
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if d := list[0]; d.Name != "小王的手机" || d.OS != "Android 15" || d.Ref != device.RefOf("dev-1") {
		t.Fatalf("device %+v (ref of dev-1 %s)", d, device.RefOf("dev-1"))
	}
	for _, bad := range []string{strings.Repeat("机", device.MaxNameLen+1), "phone\n", "a\u202eenohp", "\xff"} {
		if err := r.RememberNamed(ctx, "c1", "dev-2", bad, "iOS 17", ip("192.0.2.1")); !errors.Is(err, device.ErrBadInput) {
			t.Errorf("name %q: %v, want ErrBadInput", bad, err)
		}
	}
	if err := device.CheckName(strings.Repeat("机", device.MaxNameLen)); err != nil {
		t.Errorf("%d Chinese characters: %v", device.MaxNameLen, err)
	}
}
