package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
)

// TestKEKRotationRoutes: POST /v1/admin/kek-rotation starts the rotation
// (202 with its status) as the authenticated caller, GET reads it; a
// refusal from keysvc is rendered from the error table; the metrics carry
// the epoch and the progress.
func TestKEKRotationRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.req("POST", "/v1/admin/kek-rotation", rootToken, "")
	r.expect(t, 202, "")
	var st wire.KEKRotationStatus
	if err := json.Unmarshal(r.body, &st); err != nil || st.Target != 2 || st.State != wire.KEKRewrapping {
		t.Fatalf("POST body %s (%v)", r.body, err)
	}
	if c := e.be.last(t); c.Method != "StartKEKRotation" || c.Caller.Name != "root" || !c.Caller.Admin {
		t.Fatalf("backend call %+v", c)
	}
	r = e.req("GET", "/v1/admin/kek-rotation", rootToken, "")
	r.expect(t, 200, "")
	if err := json.Unmarshal(r.body, &st); err != nil || st.Done != 3 || st.Total != 10 {
		t.Fatalf("GET body %s (%v)", r.body, err)
	}
	e.req("POST", "/v1/admin/kek-rotation", rootToken, `{"x":1}`).expect(t, 400, "unknown_field")
	e.be.setErr("StartKEKRotation", wire.ErrIllegalTransition)
	e.req("POST", "/v1/admin/kek-rotation", rootToken, "").expect(t, 409, "illegal_transition")
	e.be.setErr("KEKRotation", wire.ErrForbidden)
	e.req("GET", "/v1/admin/kek-rotation", aliceToken, "").expect(t, 403, "forbidden")
	e.req("GET", "/v1/admin/kek-rotation", "", "").expect(t, 401, "unauthenticated")

	e.be.mu.Lock()
	e.be.stats = keysvc.Stats{KEKEpoch: 2, KEKRotating: true, KEKRotationDone: 40, KEKRotationTotal: 100}
	e.be.mu.Unlock()
	m := e.scrape()
	for _, want := range []string{"keyward_kek_epoch 2", "keyward_kek_rotation_active 1", "keyward_kek_rotation_done 40", "keyward_kek_rotation_total 100"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}
