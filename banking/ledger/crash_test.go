package ledger_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/banking/store/pgstore"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
)

// The crash test runs a burst of transfers in a child process (this test
// binary again, running TestCrashChild with crashEnv set), kills it with
// SIGKILL mid-burst, and checks the file in the parent (issue 6 item 8).
// On PostgreSQL (KEYWARD_BANKING_STORE=postgres) the child gets a
// database's DSN instead of the file's path.
const (
	crashEnv      = "KEYWARD_LEDGER_CRASH_CHILD" // the ledger file, or a PostgreSQL DSN
	crashRoundEnv = "KEYWARD_LEDGER_CRASH_ROUND"
	crashAccounts = 20
	crashWorkers  = 64
	crashStart    = 1_000_000_00 // each account's opening deposit
)

var crashLimits = &ledger.Limits{PerTransaction: 1_000_000_00, Daily: 5_000_000_00}

// crashRequest is burst request i of a round: deterministic, so the parent
// can send exactly the same request again.
func crashRequest(ids []string, round, i int) ledger.TransferRequest {
	from := i % crashAccounts
	to := (from + 1 + (i/crashAccounts)%(crashAccounts-1)) % crashAccounts
	return ledger.TransferRequest{IdempotencyKey: fmt.Sprintf("crash-r%d-%d", round, i), From: ids[from], To: ids[to],
		Amount: int64(1 + i%1000), Currency: "CNY", Memo: fmt.Sprintf("burst %d/%d", round, i)}
}

func crashIndex(key string, round int) (int, bool) {
	rest, ok := strings.CutPrefix(key, fmt.Sprintf("crash-r%d-", round))
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil
}

// TestCrashChild is the child's side; without crashEnv it does nothing.
// It prints "ready" and then "ack <i>" for every transfer the ledger
// acknowledged, until it is killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("the crash test's child process")
	}
	round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
	l, _, err := openCrashLedger(path, ledger.Options{MaxBatchSize: crashWorkers / 2})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	ids := crashAccountIDs(t, l)
	fmt.Println("ready")
	var next atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(20 * time.Second) // never outlive a lost parent for long
	for range crashWorkers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if _, err := l.Transfer(context.Background(), crashRequest(ids, round, i)); err != nil {
					fmt.Println("error:", err)
					os.Exit(3)
				}
				os.Stdout.WriteString("ack " + strconv.Itoa(i) + "\n") // one write: lines never interleave
			}
		})
	}
	wg.Wait()
	os.Exit(4) // should have been killed
}

func crashAccountIDs(t testing.TB, l *ledger.Ledger) []string {
	accs, err := l.AccountsByOwner(context.Background(), "crash")
	if err != nil || len(accs) != crashAccounts {
		t.Fatalf("crash accounts: %d, %v", len(accs), err)
	}
	ids := make([]string, len(accs))
	for i, a := range accs {
		ids[i] = a.ID
	}
	return ids
}

// runCrashChild starts the child, waits until it has had killAfter
// transfers acknowledged (plus a random pause), kills it with SIGKILL and
// returns every index it acknowledged.
func runCrashChild(t *testing.T, path string, round, killAfter int) map[int]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), crashEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]bool{}
	sc := bufio.NewScanner(out)
	killed := false
	var other []string
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			if line != "ready" {
				other = append(other, line)
			}
			continue
		}
		i, _ := strconv.Atoi(rest)
		acked[i] = true
		if !killed && len(acked) >= killAfter {
			time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true // keep reading: acks already in the pipe count too
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !killed || !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed mid-burst (killed=%v, err=%v, output %q)", killed, err, other)
	}
	return acked
}

// TestCrashSafety kills a process mid-burst three times. After each kill
// the reopened ledger must verify (no half-applied posting, the books sum
// to zero), every transfer the child saw acknowledged must be there, and
// sending every key of the burst again must apply each transfer exactly
// once in total.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	ctx := context.Background()
	// Both stores: the children open the ledger by a bbolt path or, when
	// the suite runs on PostgreSQL, a database's DSN.
	path := filepath.Join(t.TempDir(), "ledger.db")
	if dbtest.Backend() == "postgres" {
		path = pgtest.Fresh(t)
	}
	l, closeLedger, err := openCrashLedger(path, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range crashAccounts {
		mustAccount(t, l, "crash", crashStart, crashLimits)
	}
	if err := closeLedger(); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		killAfter := 100 + rand.IntN(900)
		acked := runCrashChild(t, path, round, killAfter)

		l, closeLedger, err := openCrashLedger(path, ledger.Options{MaxBatchSize: crashWorkers / 2})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := l.Verify(ctx)
		if err != nil {
			closeLedger()
			t.Fatalf("round %d: Verify after SIGKILL: %v", round, err)
		}
		if rep.CustomerTotals["CNY"] != crashAccounts*crashStart {
			t.Fatalf("round %d: customers hold %d, want %d", round, rep.CustomerTotals["CNY"], crashAccounts*crashStart)
		}
		committed, maxIdx := crashCommitted(t, l, round)
		for i := range acked {
			if !committed[i] {
				t.Fatalf("round %d: transfer %d was acknowledged but is not in the ledger", round, i)
			}
		}
		// Every request the child may have sent: up to the newest
		// committed one, plus what its workers may have had in flight.
		burst := maxIdx + 1 + 2*crashWorkers
		ids := crashAccountIDs(t, l)
		var replayed, applied atomic.Int64
		var wg sync.WaitGroup
		var next atomic.Int64
		for range crashWorkers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < burst; i = int(next.Add(1) - 1) {
					r, err := l.Transfer(ctx, crashRequest(ids, round, i))
					switch {
					case err != nil:
						t.Errorf("round %d: resend %d: %v", round, i, err)
						return
					case r.Replayed != committed[i]:
						t.Errorf("round %d: resend %d: replayed=%v, committed before the crash=%v", round, i, r.Replayed, committed[i])
					case r.Replayed:
						replayed.Add(1)
					default:
						applied.Add(1)
					}
				}
			})
		}
		wg.Wait()
		after, err := l.Verify(ctx)
		if err != nil {
			t.Fatalf("round %d: Verify after resending: %v", round, err)
		}
		now, _ := crashCommitted(t, l, round)
		if len(now) != burst || after.ByKind[ledger.KindTransfer]-rep.ByKind[ledger.KindTransfer] != uint64(applied.Load()) ||
			after.CustomerTotals["CNY"] != crashAccounts*crashStart {
			t.Fatalf("round %d: %d keys, %d transfers of the round in the journal, %d newly applied; customers hold %d",
				round, burst, len(now), applied.Load(), after.CustomerTotals["CNY"])
		}
		t.Logf("round %d: killed after %d acks; %d committed (acked %d), resent %d keys: %d replayed, %d applied now",
			round, killAfter, len(committed), len(acked), burst, replayed.Load(), applied.Load())
		if err := closeLedger(); err != nil {
			t.Fatal(err)
		}
	}
}

// openCrashLedger opens the crash test's ledger: a bbolt file by path, or a
// PostgreSQL database by DSN; Close releases either.
func openCrashLedger(spec string, opts ledger.Options) (*ledger.Ledger, func() error, error) {
	if !strings.HasPrefix(spec, "postgres") {
		l, err := ledger.Open(spec, opts)
		if err != nil {
			return nil, nil, err
		}
		return l, l.Close, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgstore.Open(ctx, pgstore.Config{DSN: spec})
	if err != nil {
		return nil, nil, err
	}
	l, err := ledger.New(db, opts)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return l, db.Close, nil
}

// crashCommitted lists the burst indices of round in the journal, by
// walking the statements of the crash accounts' debits.
func crashCommitted(t *testing.T, l *ledger.Ledger, round int) (map[int]bool, int) {
	t.Helper()
	got := map[int]bool{}
	maxIdx := -1
	for _, id := range crashAccountIDs(t, l) {
		var before uint64
		for {
			page, err := l.Statement(context.Background(), id, before, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				if e.Amount >= 0 || e.Kind != ledger.KindTransfer {
					continue
				}
				r, err := l.Posting(context.Background(), e.TransferID)
				if err != nil {
					t.Fatal(err)
				}
				if i, ok := crashIndex(r.IdempotencyKey, round); ok {
					if got[i] {
						t.Fatalf("round %d: transfer %d posted twice", round, i)
					}
					got[i] = true
					maxIdx = max(maxIdx, i)
				}
			}
			before = page[len(page)-1].Seq
		}
	}
	return got, maxIdx
}
