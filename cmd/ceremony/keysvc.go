package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/keyward/keyward/cmd/internal/secretfile"
	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

// Ceremonies on keysvc's admin API (R-TOK-8): rotation and scheduled
// destruction, and the audit-chain check. Their transcripts are signed by
// the transcript.signer token's ceremony-audit key.

func keysvcClient(k keysvcRef) (*client.Client, error) {
	bearer, err := secretfile.Read(k.BearerToken)
	if err != nil {
		return nil, fmt.Errorf("%w: keysvc.bearer_token_file: %v", errConfig, err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if k.CAFile != "" {
		pemBytes, err := os.ReadFile(k.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%w: keysvc.ca_file: no certificate in %s", errConfig, k.CAFile)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return client.New(k.URL, client.WithBearer(bearer), client.WithHTTPClient(hc))
}

func runRotate(ctx context.Context, o *options) error {
	var c rotateConfig
	s, err := start(o, "rotate", &c, &c.common, func() []string {
		return []string{
			"open the signing token " + c.Transcript.Signer.Label,
			fmt.Sprintf("rotate %v on %s: read each key, rotate, check the new primary version", c.Keys, c.Keysvc.URL),
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.rotate(ctx, &c))
}

func (s *session) rotate(ctx context.Context, c *rotateConfig) error {
	if err := s.openSigner(ctx, &c.common); err != nil {
		return err
	}
	cl, err := keysvcClient(c.Keysvc)
	if err != nil {
		return err
	}
	for _, name := range c.Keys {
		before, err := cl.GetKey(ctx, name)
		if err != nil {
			return fmt.Errorf("key %s: %w", name, err)
		}
		after, err := cl.Rotate(ctx, name)
		if err != nil {
			return fmt.Errorf("rotate %s: %w", name, err)
		}
		check, err := cl.GetKey(ctx, name)
		if err != nil {
			return err
		}
		if after.Primary <= before.Primary || check.Primary != after.Primary {
			return fmt.Errorf("%w: key %s: primary version %d before, %d after, %d read back", errVerify, name, before.Primary, after.Primary, check.Primary)
		}
		s.rec.key(keyRecord{Label: name, Type: string(after.Algorithm), Note: fmt.Sprintf("rotated: primary version %d -> %d", before.Primary, after.Primary)})
		s.rec.step("rotate "+name, "primary version %d -> %d (read back)", before.Primary, after.Primary)
	}
	return nil
}

func runScheduleDestroy(ctx context.Context, o *options) error {
	var c scheduleDestroyConfig
	s, err := start(o, "schedule-destroy", &c, &c.common, func() []string {
		plan := []string{"open the signing token " + c.Transcript.Signer.Label, "confirm"}
		for _, v := range c.Versions {
			plan = append(plan, fmt.Sprintf("schedule destruction of %s version %d (delay %s)", v.Key, v.Version, orDefault(v.Delay)))
		}
		return plan
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.scheduleDestroy(ctx, &c))
}

func orDefault(d string) string {
	if d == "" {
		return "keysvc's default"
	}
	return d
}

func (s *session) scheduleDestroy(ctx context.Context, c *scheduleDestroyConfig) error {
	if err := s.openSigner(ctx, &c.common); err != nil {
		return err
	}
	cl, err := keysvcClient(c.Keysvc)
	if err != nil {
		return err
	}
	if err := confirm(s.o, fmt.Sprintf("Schedule the destruction of %d key version(s) on %s?", len(c.Versions), c.Keysvc.URL), "yes"); err != nil {
		return err
	}
	for _, v := range c.Versions {
		kv, err := cl.SetVersionState(ctx, v.Key, v.Version, wire.ActionScheduleDestroy, v.delay)
		if err != nil {
			return fmt.Errorf("schedule-destroy %s version %d: %w", v.Key, v.Version, err)
		}
		when := "?"
		for _, vv := range kv.Versions {
			if vv.Version == v.Version && vv.DestroyAt != nil {
				when = vv.DestroyAt.UTC().Format(time.RFC3339)
			}
		}
		if when == "?" {
			return fmt.Errorf("%w: keysvc did not report a destruction time for %s version %d", errVerify, v.Key, v.Version)
		}
		s.rec.key(keyRecord{Label: v.Key, Type: string(kv.Algorithm), Note: fmt.Sprintf("version %d scheduled for destruction at %s", v.Version, when)})
		s.rec.step("schedule-destroy "+v.Key, "version %d scheduled for destruction at %s", v.Version, when)
	}
	return nil
}

func runAuditVerify(ctx context.Context, o *options) error {
	var c auditVerifyConfig
	s, err := start(o, "audit verify", &c, &c.common, func() []string {
		return []string{
			"open the signing token " + c.Transcript.Signer.Label,
			fmt.Sprintf("open %s read-only; verify the audit chain and checkpoints with %s", c.Store, c.PublicKey),
		}
	})
	if s == nil || err != nil {
		return err
	}
	return s.finish(ctx, &c.common, s.auditVerify(ctx, &c))
}

func (s *session) auditVerify(ctx context.Context, c *auditVerifyConfig) error {
	if err := s.openSigner(ctx, &c.common); err != nil {
		return err
	}
	pub, err := readECPublicKey(c.PublicKey)
	if err != nil {
		return err
	}
	fp, _, _ := fingerprint(pub)
	store, err := boltstore.Open(c.Store, boltstore.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("open store (is keysvc running? stop it or verify a copy): %w", err)
	}
	defer store.Close()
	s.rec.step("open store", "%s read-only; audit public key SHA-256 %s", c.Store, fp)
	rep, err := keysvc.VerifyAudit(store, pub)
	if err != nil {
		return fmt.Errorf("%w: %v", errVerify, err)
	}
	s.rec.step("verify audit chain", "ok: %d records, %d signed checkpoints, last record %d, last checkpoint %d, %d newest records not yet under a checkpoint",
		rep.Records, rep.Checkpoints, rep.LastSeq, rep.LastCheckpoint, rep.Unsigned)
	fmt.Fprintf(s.o.stdout, "audit chain ok: %d records, %d signed checkpoints\n", rep.Records, rep.Checkpoints)
	return nil
}
