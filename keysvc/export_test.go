package keysvc

// NewMemConfirmStoreForTest is the in-memory ConfirmStore, for the
// conformance suite in package keysvc_test.
func NewMemConfirmStoreForTest() ConfirmStore { return newMemConfirmStore(nil) }
