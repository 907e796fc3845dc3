package keysvc_test

import (
	"testing"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/confirmtest"
)

// TestMemConfirmStore runs the ConfirmStore conformance suite on the
// in-memory store keysvc uses beside bbolt.
func TestMemConfirmStore(t *testing.T) {
	confirmtest.Run(t, func(*testing.T) keysvc.ConfirmStore { return keysvc.NewMemConfirmStoreForTest(nil) })
}
