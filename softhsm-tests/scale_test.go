package softhsmtests

// Customer keys at scale (issue 5 item 3): every customer has a
// confirm-required signing key with protection "wrapped", so the token holds
// the same handful of objects whether the bank has ten customers or
// 100,000. CI enrols KEYWARD_SCALE_CUSTOMERS customers (default 2,000; 300
// with -short); `make scale` runs 100,000 and prints the figures that
// docs/PERFORMANCE.md quotes.

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

func TestCustomerScale(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 300
	}
	if v := os.Getenv("KEYWARD_SCALE_CUSTOMERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("KEYWARD_SCALE_CUSTOMERS=%q: want a positive number", v)
		}
	}
	e := newKeysvcEnv(t)
	ctx := context.Background()
	officer := keysvc.Caller{Name: "officer", Admin: true}
	before, err := e.tok.tok.Pool().CountTokenObjects(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}

	// Enrolment through the Service (the HTTP path is the same code; the
	// flow test covers HTTP), 16 at a time like a busy enrolment front end.
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := atomic.Int64{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				alg := wire.AlgECP256
				if i%4 == 3 {
					alg = wire.AlgSM2
				}
				name := fmt.Sprintf("cust-%06d", i)
				k, err := e.svc.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: name, Purpose: wire.PurposeSign, Algorithm: alg,
					Protection: wire.ProtectionWrapped, Confirm: wire.ConfirmRequired,
					Policy: wire.Policy{Grants: []wire.Grant{{Client: "banking", Ops: []wire.Op{wire.OpSign, wire.OpVerify}}}}})
				if err == nil {
					err = e.svc.Enrol(ctx, name, k.SetupCode(), []byte(holderPIN))
				}
				if err != nil {
					if failed.Add(1) < 5 {
						t.Errorf("%s: %v", name, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	enrol := time.Since(start)
	if failed.Load() > 0 {
		t.Fatalf("%d enrolments failed", failed.Load())
	}
	after, err := e.tok.tok.Pool().CountTokenObjects(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("token objects: %d before enrolling %d customers, %d after; customer keys must not live in the token", before, n, after)
	}

	// The officer pages through every key over HTTP (1000 per page).
	start = time.Now()
	listed, pages, cursor := 0, 0, ""
	for {
		out := e.must(t, 200, officerToken, "GET", "/v1/keys?limit=1000&after="+cursor, nil)
		ks, _ := out["keys"].([]any)
		listed += len(ks)
		pages++
		next, _ := out["next"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	list := time.Since(start)
	if listed != n {
		t.Fatalf("listed %d keys in %d pages, want %d", listed, pages, n)
	}
	start = time.Now()
	if err := e.svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	tick := time.Since(start)

	// Confirmed signatures for random customers, over HTTP, at this scale.
	const sample = 100
	start = time.Now()
	for j := 0; j < sample; j++ {
		key := fmt.Sprintf("cust-%06d", rand.IntN(n))
		msg := transferJSON(t, "Payee "+strconv.Itoa(j), "88.00", "scale-"+strconv.Itoa(j)+"-"+key)
		id := e.requestSign(t, key, msg)
		if st, out := e.approve(t, e.lastNotice(t, key).HolderToken, key, digestHex(msg), holderPIN); st != 200 {
			t.Fatalf("%s approve: %d %v", key, st, out)
		}
		out := e.poll(t, id, "5s")
		v := e.must(t, 200, bankingToken, "POST", "/v1/keys/"+key+"/verify", map[string]any{"message": base64.StdEncoding.EncodeToString(msg), "signature": out["signature"]})
		if v["valid"] != true {
			t.Fatalf("%s: %v %v", key, out, v)
		}
	}
	flow := time.Since(start)
	st, _ := os.Stat(e.dbPath)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d customers enrolled in %v (%.0f/s, create+enrol); token objects %d before and after; store %.1f MB (%.0f bytes per customer); heap %.0f MB; %d confirmed signatures (request, approve, poll, verify) in %v (%.1f ms each); listing all keys took %v in %d pages; one scheduler tick %v",
		n, enrol.Round(time.Millisecond), float64(n)/enrol.Seconds(), after, float64(st.Size())/1e6, float64(st.Size())/float64(n), float64(ms.HeapAlloc)/1e6,
		sample, flow.Round(time.Millisecond), float64(flow.Milliseconds())/sample, list.Round(time.Millisecond), pages, tick.Round(time.Millisecond))
}
