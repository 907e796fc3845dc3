package etcdlocal_test

import (
	"context"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyward/keyward/keysvc/etcdstore/etcdlocal"
)

// TestClusterQuorum starts three real etcd members with mutual TLS, writes
// through one, kills one (writes go on), kills a second (writes fail: no
// quorum), restarts both (writes go on, the data is there).
func TestClusterQuorum(t *testing.T) {
	ctx := context.Background()
	c, err := etcdlocal.Start(ctx, etcdlocal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	tlsCfg, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), TLS: tlsCfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(v string) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cli.Put(pctx, "/t/k", v)
		return err
	}
	if err := put("1"); err != nil {
		t.Fatal(err)
	}
	// A follower first: no election, so no write may fail. (A killed
	// leader stalls writes for an election, about 2 s here; a write in
	// flight on the killed member's connection fails with Unavailable,
	// and etcd's client never retries a write by itself. keysvc's etcd
	// store handles both.)
	f, err := c.Follower(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.Kill()
	if err := put("2"); err != nil && status.Code(err) != codes.Unavailable {
		t.Fatalf("one follower of three down: %v", err)
	}
	if err := put("2"); err != nil {
		t.Fatalf("one follower of three down: %v", err)
	}
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.Kill()
	if err := put("3"); err == nil {
		t.Fatal("two members of three down: a write succeeded without quorum")
	}
	for _, m := range []*etcdlocal.Member{f, l} {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(wctx); err != nil {
		t.Fatal(err)
	}
	// The client reconnects by itself; the first tries may still fail
	// while the members elect a leader, so give it the election's time.
	var perr error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if perr = put("4"); perr == nil {
			break
		}
	}
	if perr != nil {
		t.Fatalf("after restart: %v", perr)
	}
	gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
	defer gcancel()
	r, err := cli.Get(gctx, "/t/k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "4" {
		t.Fatalf("get after restart: %v %v", r, err)
	}
}

// TestClientNeedsCertificate: without the client certificate the cluster
// refuses the connection (mutual TLS is on).
func TestClientNeedsCertificate(t *testing.T) {
	c, err := etcdlocal.Start(context.Background(), etcdlocal.Options{Dir: t.TempDir(), Members: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	tlsCfg, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.Certificates = nil
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), TLS: tlsCfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return // refused at dial: fine
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/t/k", "v"); err == nil {
		t.Fatal("a client without a certificate wrote to the cluster")
	}
}

func TestMain(m *testing.M) {
	if _, err := etcdlocal.Binary("."); err != nil {
		println(err.Error())
		os.Exit(1)
	}
	os.Exit(m.Run())
}
