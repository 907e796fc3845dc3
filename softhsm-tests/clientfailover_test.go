//go:build linux

package softhsmtests

// The Go client's failover between keysvc endpoints (issue 16 item 3)
// against a real keysvc process (cmd/keysvc, TLS, a SoftHSM token). Two
// keysvc processes cannot share a store until the etcd backend lands, so
// the second endpoint is a dead port: the client is given [dead, keysvc]
// and [keysvc], signs, and keysvc is killed with SIGKILL and restarted on
// the same port under it.
//
//   - [dead, keysvc]: every signature succeeds and verifies; the calls the
//     spread sends to the dead port first fail over (Stats.Failovers).
//   - kill -9 under four signing loops per client, restart on the same
//     port: while nothing listens, calls fail with an *UnavailableError
//     naming how many endpoints were tried; every call started once
//     keysvc is ready again succeeds, on the same client objects. A client
//     with retries enough to outlast the restart sees no error at all.
//   - The log gives the outage as the clients saw it.

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/client"
	"github.com/keyward/keyward/keysvc/wire"
)

// signSample is one Sign through a client.
type signSample struct {
	start, end time.Time
	err        error
}

func TestClientFailoverRealKeysvc(t *testing.T) {
	dir := t.TempDir()
	tt := newTestTLS(t, dir)
	ks := startKeysvc(t, dir, tt)
	ctx := context.Background()
	officer := ks.kmsClient(t, officerToken, 10*time.Second, 2)
	if _, err := officer.CreateKey(ctx, wire.CreateKeyRequest{Name: "cf-sign", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256,
		Protection: wire.ProtectionHSM, Policy: wire.Policy{Grants: []wire.Grant{{Client: "bankapp", Ops: []wire.Op{wire.OpSign, wire.OpPublic}},
			{Client: "officer", Ops: []wire.Op{wire.OpPublic}}}}}); err != nil {
		t.Fatal(err)
	}
	pk, err := officer.PublicKey(ctx, "cf-sign", 0)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(pk.PEM))
	pubAny, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := pubAny.(*ecdsa.PublicKey)

	dead := "https://" + freeAddr(t)
	newMulti := func(urls []string, opts ...client.Option) *client.Client {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: tt.clientTransport(16)}
		t.Cleanup(hc.CloseIdleConnections)
		c, err := client.NewMulti(urls, append([]client.Option{client.WithBearer(bankappToken), client.WithHTTPClient(hc)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pair := newMulti([]string{dead, ks.url})                            // defaults: spread, 2 s down time, 2 retry rounds
	single := newMulti([]string{ks.url})                                // one endpoint, the defaults
	patient := newMulti([]string{dead, ks.url}, client.WithRetries(40)) // rounds enough to outlast a restart

	var seq atomic.Int64
	sign := func(c *client.Client) signSample {
		msg := fmt.Sprintf("client failover %d", seq.Add(1))
		s := signSample{start: time.Now()}
		res, err := c.Sign(ctx, "cf-sign", wire.SignRequest{Message: []byte(msg)})
		s.end, s.err = time.Now(), err
		if err == nil {
			parts := strings.SplitN(res.Signature, ":", 3)
			der, derr := base64.StdEncoding.DecodeString(parts[len(parts)-1])
			d := sha256.Sum256([]byte(msg))
			if derr != nil || len(parts) != 3 || !ecdsa.VerifyASN1(pub, d[:], der) {
				s.err = fmt.Errorf("signature %q does not verify", res.Signature)
			}
		}
		return s
	}

	// 1. A dead endpoint beside a live one: nothing fails.
	var lat []time.Duration
	for range 20 {
		s := sign(pair)
		if s.err != nil {
			t.Fatalf("[dead, keysvc]: %v", s.err)
		}
		lat = append(lat, s.end.Sub(s.start))
	}
	st := pair.Stats()
	if st.Failovers == 0 || !pair.Endpoints()[0].Down || pair.Endpoints()[1].Down {
		t.Fatalf("[dead, keysvc] after 20 signatures: %+v, %+v", st, pair.Endpoints())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("[dead, keysvc]: 20 signatures, 0 failed, %d failovers (the dead port is retried every 2 s); latency p50 %v max %v",
		st.Failovers, lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))

	// 2. kill -9 and a restart on the same port, under signing loops.
	var (
		mu      sync.Mutex
		samples = map[string][]signSample{}
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for name, c := range map[string]*client.Client{"[dead, keysvc]": pair, "[keysvc]": single, "[dead, keysvc] 40 retries": patient} {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					s := sign(c)
					mu.Lock()
					samples[name] = append(samples[name], s)
					mu.Unlock()
					if s.err != nil {
						time.Sleep(20 * time.Millisecond) // a caller that got an error does not spin
					}
				}
			}()
		}
	}
	time.Sleep(time.Second)
	killed := time.Now()
	ks.kill(t)
	time.Sleep(500 * time.Millisecond) // down long enough for every loop to meet it
	restarted := time.Now()
	ks.start(t) // same port, same data and token; returns once /healthz answers
	healthy := time.Now()
	ready := healthy
	for officer.Ready(ctx) != nil { // /readyz: the token is logged in again
		if time.Since(healthy) > 10*time.Second {
			t.Fatal("keysvc not ready 10 s after its restart")
		}
		time.Sleep(10 * time.Millisecond)
		ready = time.Now()
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	t.Logf("kill -9 at +0; restarted at +%v, healthy at +%v, ready at +%v",
		restarted.Sub(killed).Round(time.Millisecond), healthy.Sub(killed).Round(time.Millisecond), ready.Sub(killed).Round(time.Millisecond))
	for _, name := range []string{"[dead, keysvc]", "[keysvc]", "[dead, keysvc] 40 retries"} {
		ss := samples[name]
		var (
			failed, after, before int
			firstBack             time.Time
			maxLat                time.Duration
			firstErr              error
		)
		for _, s := range ss {
			maxLat = max(maxLat, s.end.Sub(s.start))
			if s.start.Before(killed) {
				before++
			}
			if s.err == nil {
				if s.end.After(killed) && (firstBack.IsZero() || s.end.Before(firstBack)) && s.start.After(killed) {
					firstBack = s.end
				}
				continue
			}
			failed++
			if firstErr == nil {
				firstErr = s.err
			}
			var ue *client.UnavailableError
			if !errors.As(s.err, &ue) || !errors.Is(s.err, client.ErrUnavailable) || ue.Tried != ue.Endpoints ||
				!strings.Contains(s.err.Error(), fmt.Sprintf("%d of %d endpoints tried", ue.Endpoints, ue.Endpoints)) {
				t.Errorf("%s: an error that is not every endpoint unavailable: %v", name, s.err)
			}
			if strings.Contains(s.err.Error(), bankappToken) {
				t.Errorf("%s: the bearer token is in an error", name)
			}
			if s.start.After(ready) {
				after++
			}
		}
		if before == 0 || firstBack.IsZero() {
			t.Errorf("%s: %d calls before the kill, first success after it at %v: the loop did not run across the restart", name, before, firstBack)
		}
		if after > 0 {
			t.Errorf("%s: %d calls started after keysvc was ready again failed; first error: %v", name, after, firstErr)
		}
		if name == "[dead, keysvc] 40 retries" && failed > 0 {
			t.Errorf("%s: %d calls failed; with 40 retry rounds none should have: %v", name, failed, firstErr)
		}
		back := "never"
		if !firstBack.IsZero() {
			back = "+" + firstBack.Sub(killed).Round(time.Millisecond).String()
		}
		t.Logf("%s: %d signatures, %d failed (each an *UnavailableError), the first success among calls started after the kill ended at %s, max latency %v; %+v",
			name, len(ss), failed, back, maxLat.Round(time.Millisecond), clientStats(name, pair, single, patient))
		if failed > 0 {
			t.Logf("%s: a failure reads: %v", name, firstErr)
		}
	}
}

func clientStats(name string, pair, single, patient *client.Client) client.Stats {
	switch name {
	case "[dead, keysvc]":
		return pair.Stats()
	case "[keysvc]":
		return single.Stats()
	}
	return patient.Stats()
}
