package bankaudit_test

import (
	"testing"

	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
)

// TestMain lets this package's suite run on PostgreSQL too
// (KEYWARD_BANKING_STORE=postgres; make test runs it both ways).
func TestMain(m *testing.M) {
	dbtest.Postgres = pgtest.Opener
	pgtest.Main(m)
}
