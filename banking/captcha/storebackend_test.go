package captcha_test

import (
	"testing"

	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
)

// TestMain lets this package's suite run on PostgreSQL too
// (KEYWARD_BANKING_STORE=postgres; make test runs it both ways): dbtest
// opens a fresh database per test on one server for the test binary,
// which pgtest.Main stops at the end.
func TestMain(m *testing.M) {
	dbtest.Postgres = pgtest.Opener
	pgtest.Main(m)
}
