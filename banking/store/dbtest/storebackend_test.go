package dbtest_test

import (
	"os"
	"testing"

	"github.com/keyward/keyward/banking/store/dbtest"
	"github.com/keyward/keyward/banking/store/pgstore/pgtest"
)

// TestMain: as in the suites that use dbtest, so its own tests run on
// PostgreSQL too; TestBackendChoiceRefusals' child runs unwired.
func TestMain(m *testing.M) {
	if os.Getenv("DBTEST_UNWIRED") != "1" {
		dbtest.Postgres = pgtest.Opener
	}
	pgtest.Main(m)
}
