package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

// ceremony kek-rotate (issue 15 item 2): rotate keysvc's key-encryption
// keys through its admin API. Before it, officers generate epoch n+1's
// KEKs in every token of keysvc with `ceremony keygen` (keysvc-kek-e<n+1>:
// aes-256, usage [wrap, unwrap]; keysvc-sm-kek-e<n+1>: aes-256, usage
// [encrypt, decrypt]; both backup: true and destroyable: true) and back
// them up. The ceremony checks that epoch from_epoch is in service, starts
// the rotation (or follows one already running to from_epoch+1, after an
// interrupted ceremony), follows keysvc's re-wrap of every live blob to
// its end, and records the KEKs keysvc destroyed. What it cannot do is
// the officers' part: destroy the old KEKs' backup files and shares.

type kekRotateConfig struct {
	common `yaml:",inline"`
	Keysvc keysvcRef `yaml:"keysvc"`
	// FromEpoch is the KEK epoch the officers expect in service: the
	// ceremony refuses any other (a rotation run twice by mistake).
	FromEpoch int `yaml:"from_epoch"`
	// PollInterval is the pause between progress reads (Go duration;
	// default 2s).
	PollInterval string `yaml:"poll_interval"`

	poll time.Duration
}

func (c *kekRotateConfig) validate() error {
	if err := c.common.validate(true); err != nil {
		return err
	}
	if err := c.needSigner(); err != nil {
		return err
	}
	if err := c.validKeysvc(&c.Keysvc); err != nil {
		return err
	}
	if c.FromEpoch < 1 {
		return cfgErr("from_epoch", "required: the KEK epoch in service now (1 before the first rotation; GET /v1/admin/kek-rotation says \"current\")")
	}
	c.poll = 2 * time.Second
	if c.PollInterval != "" {
		d, err := time.ParseDuration(c.PollInterval)
		if err != nil || d < 100*time.Millisecond || d > 10*time.Minute {
			return cfgErr("poll_interval", "must be a duration from 100ms to 10m, such as 5s")
		}
		c.poll = d
	}
	return nil
}

const exampleKEKRotate = `module: /usr/lib/softhsm/libsofthsm2.so
officers: [Alice Wong, Bob Lee]
transcript:
  dir: out/kek-rotate-2026-12
  signer: {label: ceremony-officers, user_pin: prompt}
pin_guard: /var/lib/keyward/keysvc.db   # this host's; keysvc must not run here: run from the officers' workstation
keysvc:
  url: https://keysvc.bank.internal:8443
  ca_file: /etc/keyward/ca.pem
  bearer_token_file: /run/ceremony/admin.token
from_epoch: 1          # the epoch in service now; the rotation moves every blob to epoch 2
poll_interval: 5s
# Before: generate epoch 2's KEKs in every token of keysvc and back them up, e.g. with keygen:
#   keys:
#     - {label: keysvc-kek-e2, type: aes-256, usage: [wrap, unwrap], backup: true, destroyable: true}
#     - {label: keysvc-sm-kek-e2, type: aes-256, usage: [encrypt, decrypt], backup: true, destroyable: true}
# After: destroy the backup files and shares of epoch 1's KEKs (keysvc-kek, keysvc-sm-kek).
`

func runKEKRotate(ctx context.Context, o *options) error {
	var c kekRotateConfig
	s, err := start(o, "kek-rotate", &c, &c.common, func() []string {
		n := c.FromEpoch + 1
		return []string{
			"open the signing token " + c.Transcript.Signer.Label,
			fmt.Sprintf("read keysvc's KEK epochs on %s: epoch %d must be in service", c.Keysvc.URL, c.FromEpoch),
			"confirm",
			fmt.Sprintf("start the KEK rotation to epoch %d (%s and %s must be in keysvc's tokens), or follow the one running", n, keysvc.KEKLabelFor(n), keysvc.SMKEKLabelFor(n)),
			fmt.Sprintf("follow the re-wrap every %s until keysvc has destroyed %s and %s", c.poll, keysvc.KEKLabelFor(c.FromEpoch), keysvc.SMKEKLabelFor(c.FromEpoch)),
			"check epoch " + fmt.Sprint(n) + " is in service and record the KEKs destroyed",
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.kekRotate(ctx, &c))
}

func (s *session) kekRotate(ctx context.Context, c *kekRotateConfig) error {
	if err := s.openSigner(ctx, &c.common); err != nil {
		return err
	}
	cl, err := keysvcClient(c.Keysvc)
	if err != nil {
		return err
	}
	from, to := c.FromEpoch, c.FromEpoch+1
	st, err := cl.KEKRotation(ctx)
	if err != nil {
		return fmt.Errorf("read keysvc's KEK epochs: %w", err)
	}
	following := st.State == wire.KEKRewrapping && st.Current == from && st.Target == to ||
		st.State == wire.KEKRetiring && st.Current == to && st.Retiring == from
	switch {
	case following:
		s.rec.step("read KEK epochs", "a rotation from epoch %d to %d is already %s (started %s by %s): following it", from, to, st.State, when(st.StartedAt), st.StartedBy)
	case st.State != wire.KEKIdle:
		return fmt.Errorf("keysvc is %s a KEK rotation (epoch %d, target %d, retiring %d), not the one from epoch %d this ceremony is for; nothing was done", st.State, st.Current, st.Target, st.Retiring, from)
	case st.Current != from:
		return fmt.Errorf("keysvc's KEK epoch is %d, this ceremony's from_epoch %d: check the file (a rotation already done?); nothing was done", st.Current, from)
	default:
		s.rec.step("read KEK epochs", "epoch %d in service, no rotation running", from)
		if err := confirm(s.o, fmt.Sprintf("Rotate keysvc's KEKs on %s from epoch %d to %d? Every wrapped key is re-wrapped, then %s and %s are destroyed in the token.",
			c.Keysvc.URL, from, to, keysvc.KEKLabelFor(from), keysvc.SMKEKLabelFor(from)), "yes"); err != nil {
			return err
		}
		if st, err = cl.StartKEKRotation(ctx); err != nil {
			return fmt.Errorf("start the KEK rotation: %w", err)
		}
		s.rec.step("start KEK rotation", "epoch %d to %d started %s; keysvc seals new blobs under epoch %d from now on", from, to, when(st.StartedAt), to)
	}
	begin, lastDone, lastErr := time.Now(), -1, ""
	for st.State != wire.KEKIdle {
		if st.Done != lastDone || st.LastError != lastErr {
			fmt.Fprintf(s.o.stdout, "kek-rotate: %s, %d of %d keys re-wrapped%s\n", st.State, st.Done, st.Total, retryText(st.LastError))
			lastDone, lastErr = st.Done, st.LastError
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while the rotation was %s (%d of %d keys; keysvc goes on by itself: run this ceremony again to follow it to its end): %w", st.State, st.Done, st.Total, ctx.Err())
		case <-time.After(c.poll):
		}
		if st, err = cl.KEKRotation(ctx); err != nil {
			return fmt.Errorf("read the KEK rotation's progress: %w", err)
		}
	}
	old := []string{keysvc.KEKLabelFor(from), keysvc.SMKEKLabelFor(from)}
	if st.Current != to || !containsEpoch(st.Retired, from) || strings.Join(st.DestroyedKEKs, ",") != strings.Join(old, ",") {
		return fmt.Errorf("%w: after the rotation keysvc reports epoch %d in service, retired %v, destroyed %v; want epoch %d, %d retired, %v destroyed", errVerify, st.Current, st.Retired, st.DestroyedKEKs, to, from, old)
	}
	s.rec.step("re-wrap", "every live blob re-wrapped to epoch %d (%d keys by this keysvc process; rotation finished %s; followed for %s)", to, st.Done, when(st.FinishedAt), time.Since(begin).Round(time.Second))
	for _, l := range st.DestroyedKEKs {
		s.rec.key(keyRecord{Label: l, Type: "aes-256", Note: fmt.Sprintf("KEK of epoch %d: destroyed in keysvc's token by keysvc at the end of the rotation", from)})
		s.rec.step("KEK destroyed", "%s (epoch %d)", l, from)
	}
	s.rec.step("officers' next step", "destroy every backup file and share of %s: until they are gone, a copy of the store made before this rotation still opens with them", strings.Join(old, " and "))
	fmt.Fprintf(s.o.stdout, "kek-rotate: epoch %d in service; destroyed %s. Now destroy the backup files and shares of %s.\n", to, strings.Join(st.DestroyedKEKs, ", "), strings.Join(old, " and "))
	return nil
}

func when(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.UTC().Format(time.RFC3339)
}

func retryText(e string) string {
	if e == "" {
		return ""
	}
	return " (retrying: " + e + ")"
}

func containsEpoch(list []int, want int) bool {
	for _, v := range list {
		if v == want {
			return true
		}
	}
	return false
}
