package dbtest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/banking/store/dbtest"
)

// TestReopenKeepsRecords: a test that closes its store and opens it again
// (a restart) finds what it wrote.
func TestReopenKeepsRecords(t *testing.T) {
	h := dbtest.New(t)
	db := h.Open()
	if err := db.Ensure([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx store.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = h.Open()
	var got string
	if err := db.View(func(tx store.Tx) error { got = string(tx.Bucket([]byte("b")).Get([]byte("k"))); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != "v" {
		t.Fatalf("after reopen: %q, want v", got)
	}
	if dbtest.Backend() != db.Backend() {
		t.Fatalf("Backend() %q but the store is %q", dbtest.Backend(), db.Backend())
	}
}

// TestNodesShareOneStore: every node handle reports Shared and sees the
// others' commits.
func TestNodesShareOneStore(t *testing.T) {
	dbs := dbtest.New(t).Nodes(2)
	for i, db := range dbs {
		if !db.Shared() {
			t.Fatalf("node %d: Shared() false", i)
		}
	}
	if err := dbs[0].Ensure([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := dbs[0].Update(func(tx store.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := dbs[1].View(func(tx store.Tx) error {
		if b := tx.Bucket([]byte("b")); b != nil {
			got = string(b.Get([]byte("k")))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != "v" {
		t.Fatalf("node 1 reads %q, want node 0's v", got)
	}
	if err := dbs[1].Close(); err != nil { // one node stopping leaves the others working
		t.Fatal(err)
	}
	if err := dbs[0].View(func(store.Tx) error { return nil }); err != nil {
		t.Fatalf("node 0 after node 1 closed: %v", err)
	}
}

// TestBackendChoiceRefusals: an unknown KEYWARD_BANKING_STORE, and
// "postgres" without the PostgreSQL wiring linked, fail the test saying
// what to do (run in a child process, since they fail it).
func TestBackendChoiceRefusals(t *testing.T) {
	if os.Getenv("DBTEST_CHILD") == "1" {
		dbtest.New(t).Open()
		return
	}
	for _, c := range []struct{ env, want string }{
		{"mysql", `want bbolt (the default) or postgres`},
		{"postgres", `dbtest.Postgres is not set`},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBackendChoiceRefusals$", "-test.count=1")
		cmd.Env = append(os.Environ(), "DBTEST_CHILD=1", "DBTEST_UNWIRED=1", dbtest.EnvBackend+"="+c.env)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%s=%s: err %v, output %s; want a failure saying %q", dbtest.EnvBackend, c.env, err, out, c.want)
		}
	}
}
