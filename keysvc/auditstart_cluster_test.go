package keysvc_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/token/memtoken"
)

// appendingStore is a store other nodes append to while a Service starts:
// right after the start-up check reads the chain head (LastAudit), the
// hook runs, as another keysvc node's appends would land on a shared
// store between two reads. lie, when set, makes LastAudit report a head
// past the stored records (the end of the log deleted).
type appendingStore struct {
	*boltstore.Store
	hook func()
	lie  bool
}

func (s *appendingStore) LastAudit() (uint64, []byte, error) {
	seq, hash, err := s.Store.LastAudit()
	if s.lie {
		seq++
	}
	if s.hook != nil {
		h := s.hook
		s.hook = nil
		h()
	}
	return seq, hash, err
}

// TestAuditStartWhileOthersAppend: a node (re)starting on the cluster's
// store while the other nodes append must start: records past the head it
// read are not "records deleted from the end" (found by
// TestClusterKillKeysvcNodeUnderLoad: a node killed under load and
// restarted refused to start). A head past the stored records is still
// refused.
func TestAuditStartWhileOthersAppend(t *testing.T) {
	ctx := context.Background()
	bs, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	tok := memtoken.New("mem", "0001")
	cfg := keysvc.Config{Keys: tok, MinDestroyDelay: time.Hour, Node: "node-a"}

	// A first node writes records and a signed checkpoint.
	cfg.Store = bs
	a, err := keysvc.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := bs.Audit(&audit.Record{Time: time.Now(), Client: "node-b", Op: "sign", Key: "k", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close()
	for i := 0; i < 3; i++ { // not yet under a checkpoint
		if err := bs.Audit(&audit.Record{Time: time.Now(), Client: "node-b", Op: "sign", Key: "k", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}

	// Node B starts while node C appends between its two reads.
	before, _, _ := bs.LastAudit()
	appended := 0
	st := &appendingStore{Store: bs, hook: func() {
		for i := 0; i < 4; i++ {
			if err := bs.Audit(&audit.Record{Time: time.Now(), Client: "node-c", Op: "sign", Key: "k", Result: "ok"}); err != nil {
				t.Error(err)
			}
			appended++
		}
	}}
	cfg.Store, cfg.Node = st, "node-b"
	b, err := keysvc.New(ctx, cfg)
	if err != nil {
		t.Fatalf("a node starting while another appends (head %d read, %d appended after): %v", before, appended, err)
	}
	b.Close()
	if appended == 0 {
		t.Fatal("the start-up check never read the head: the race was not exercised")
	}

	// A head past the stored records: refused.
	cfg.Store, cfg.Node = &appendingStore{Store: bs, lie: true}, "node-d"
	if _, err := keysvc.New(ctx, cfg); !errors.Is(err, keysvc.ErrAuditBroken) || !strings.Contains(err.Error(), "deleted from the end") {
		t.Fatalf("start with a head past the stored records: %v, want ErrAuditBroken (records deleted from the end)", err)
	}
}
