package banking

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store"
)

// TestClassifyStoreFault: the database down or failing over is a 503 the
// client may retry, never a 500 or an answer that looks like a refusal; the
// message says nothing about the database's address or the fault.
func TestClassifyStoreFault(t *testing.T) {
	for name, err := range map[string]error{
		"store":           fmt.Errorf("session get: %w: dial tcp 10.1.2.3:5432: connection refused", store.ErrBackend),
		"ledger wrapping": fmt.Errorf("%w: post: %w", ledger.ErrStore, fmt.Errorf("%w: commit outcome unknown", store.ErrBackend)),
	} {
		status, code, msg, internal := classify(err)
		if status != http.StatusServiceUnavailable || code != "unavailable" || internal || msg != msgStoreUnavailable {
			t.Errorf("%s: %d %s %q internal=%v", name, status, code, msg, internal)
		}
	}
	// A ledger store fault that is not the backend's stays a server fault.
	if status, _, _, internal := classify(fmt.Errorf("%w: disk", ledger.ErrStore)); status != http.StatusInternalServerError || !internal {
		t.Errorf("ledger.ErrStore alone: %d internal=%v", status, internal)
	}
	if errors.Is(ledger.ErrStore, store.ErrBackend) {
		t.Fatal("the sentinels must stay distinct")
	}
}
