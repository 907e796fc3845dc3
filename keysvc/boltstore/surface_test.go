package boltstore_test

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc/boltstore"
)

// TestStoreExportsNoAuditSurgery pins the exported method set of *Store
// (issue 12 item 9): the tools that rewrite, delete or reorder audit records
// live in boltsurgeon, which no command links, and must not come back as
// methods every caller of the store could reach. A new exported method fails
// this test until it is added here on purpose; a name that could edit the
// audit log in place fails it always.
func TestStoreExportsNoAuditSurgery(t *testing.T) {
	allowed := map[string]bool{
		"AddCheckpoint": true, "Audit": true, "AuditFormat": true, "AuditRecords": true,
		"Checkpoints": true, "Close": true, "CreateKey": true, "DB": true, "GetKey": true,
		"LastAudit": true, "ListKeys": true, "MigrateAudit": true, "ServiceKeys": true,
		"SetServiceKeys": true, "UpdateKey": true, "Writable": true,
		"KEKEpochs": true, "SetKEKEpochs": true, // the KEK epoch record (issue 15): appends, never edits
		"Backup": true, // a read transaction's copy of the file (issue 17): reads only

	}
	typ := reflect.TypeOf(&boltstore.Store{})
	var got []string
	for i := 0; i < typ.NumMethod(); i++ {
		got = append(got, typ.Method(i).Name)
	}
	sort.Strings(got)
	if len(got) == 0 {
		t.Fatal("reflect found no exported methods on *boltstore.Store")
	}
	for _, name := range got {
		for _, verb := range []string{"Tamper", "Delete", "Swap", "Rewrite", "Truncate", "Put"} {
			if strings.HasPrefix(name, verb) && strings.Contains(name, "Audit") {
				t.Errorf("*boltstore.Store exports %s: audit surgery belongs in boltsurgeon, which only tests link", name)
			}
		}
		if !allowed[name] {
			t.Errorf("*boltstore.Store exports %s, which this test does not know: if it cannot edit stored audit records, add it to the list", name)
		}
	}
}
