package pkcs11shim

import (
	"context"
	"testing"
	"time"
)

// TestRecoveryClosesOnlyItsOwnGeneration: two pools on two tokens of one
// module. After a C_Finalize/C_Initialize, session handle numbers start
// again, so pool A's anchor from before and pool B's anchor from after can
// have the same number. When A recovers it must not C_CloseSession its old
// handle: that would close B's anchor and, with it, B's login, silently
// (B's next private-object operation: CKR_USER_NOT_LOGGED_IN). Found
// copying keys between two tokens of one process (issue 15).
func TestRecoveryClosesOnlyItsOwnGeneration(t *testing.T) {
	ma, sa := freshToken(t, "replica-")
	_, sb := freshToken(t, "replica-")
	ma.MinReinitInterval = time.Millisecond
	reinit := func() {
		time.Sleep(2 * time.Millisecond)
		if err := ma.Reinitialize(ma.Generation()); err != nil {
			t.Fatal(err)
		}
	}
	reinit() // handle numbers start again: A's anchor gets the first one
	pa := userPool(t, ma, sa)
	reinit() // and again: B's anchor gets the same number
	pb := userPool(t, ma, sb)
	ctx := context.Background()
	if _, err := pa.GenerateRandom(ctx, 8); err != nil { // A recovers into the new generation
		t.Fatal(err)
	}
	if _, err := pb.GenerateKey(ctx, KeySpec{Type: KeyAES256, Label: "after-a-recovered"}); err != nil {
		t.Fatalf("B after A recovered: %v (A closed B's session with its own stale handle)", err)
	}
	if _, err := pa.GenerateKey(ctx, KeySpec{Type: KeyAES256, Label: "a-after-recovery"}); err != nil {
		t.Fatalf("A after its recovery: %v", err)
	}
}
