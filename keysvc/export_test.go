package keysvc

import "time"

// NewMemConfirmStoreForTest is the in-memory ConfirmStore, for the
// conformance suite in package keysvc_test.
// now is its clock (nil: time.Now); give it the Services' Config.Now.
func NewMemConfirmStoreForTest(now func() time.Time) ConfirmStore { return newMemConfirmStore(now) }
