package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/auth/internal/authtest"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/store/dbtest"
)

// TestLogoutDevice: forgetting a device ends exactly its sessions — every
// session of that customer opened from it (cached or not), none of the
// customer's other devices', none of another customer's on a device of
// the same id — and an unknown device ref ends nothing.
func TestLogoutDevice(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p := params // c1 on dev-1
	phone1, _ := e.create(t, p)
	phone2, _ := e.create(t, p)
	p.Device = "dev-2"
	laptop, _ := e.create(t, p)
	p = params
	p.Customer = "c10" // another customer, same device id, a prefix-sharing customer id
	other, _ := e.create(t, p)
	if _, err := e.m.Touch(ctx, phone1); err != nil { // cached, with an unwritten last-seen
		t.Fatal(err)
	}

	if n, err := e.m.LogoutDevice(ctx, "c1", device.RefOf("no-such-device")); err != nil || n != 0 {
		t.Fatalf("LogoutDevice(unknown) = %d, %v; want 0, nil", n, err)
	}
	n, err := e.m.LogoutDevice(ctx, "c1", device.RefOf("dev-1"))
	if err != nil || n != 2 {
		t.Fatalf("LogoutDevice(dev-1) = %d, %v; want 2", n, err)
	}
	for _, id := range []string{phone1, phone2} {
		if _, err := e.m.Touch(ctx, id); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("a dev-1 session after LogoutDevice: %v, want ErrNotFound", err)
		}
	}
	if _, err := e.m.Touch(ctx, laptop); err != nil {
		t.Fatalf("c1's dev-2 session: %v", err)
	}
	if _, err := e.m.Touch(ctx, other); err != nil {
		t.Fatalf("c10's dev-1 session: %v", err)
	}
	// After a restart (nothing cached) the deletion holds.
	e.m.Close()
	m := e.open(t)
	if _, err := m.Get(ctx, phone1); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after a restart: %v", err)
	}
	if list, err := m.List(ctx, "c1"); err != nil || len(list) != 1 || list[0].Device != "dev-2" {
		t.Fatalf("List after LogoutDevice: %+v, %v", list, err)
	}
	for _, bad := range []string{"", "abc", device.RefOf("dev-1") + "00"} {
		if _, err := m.LogoutDevice(ctx, "c1", bad); !errors.Is(err, session.ErrBadInput) {
			t.Fatalf("LogoutDevice(%q): %v, want ErrBadInput", bad, err)
		}
	}
}

// TestLogoutDeviceSharedStore: on a shared store (two banking nodes) a
// device forgotten on B ends its session on A at once, though A had it
// cached; the device's name travels with the session.
func TestLogoutDeviceSharedStore(t *testing.T) {
	ctx := context.Background()
	clk := authtest.NewClock()
	dbs := dbtest.New(t).Nodes(2)
	open := func(i int) *session.Manager {
		m, err := session.Open(session.Config{DB: dbs[i], Now: clk.Now, FlushInterval: 5 * time.Minute, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := open(0), open(1)
	p := params
	p.DeviceName = "小王的手机"
	id, _, err := a.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	p.Device, p.DeviceName = "dev-2", ""
	keep, _, err := a.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := a.Touch(ctx, id); err != nil || s.DeviceName != "小王的手机" {
		t.Fatalf("A: %+v, %v", s, err)
	}
	if n, err := b.LogoutDevice(ctx, "c1", device.RefOf("dev-1")); err != nil || n != 1 {
		t.Fatalf("LogoutDevice on B = %d, %v", n, err)
	}
	if _, err := a.Touch(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("A after B's LogoutDevice: %v, want ErrNotFound", err)
	}
	if _, err := a.Touch(ctx, keep); err != nil {
		t.Fatalf("the other device's session on A: %v", err)
	}
}
