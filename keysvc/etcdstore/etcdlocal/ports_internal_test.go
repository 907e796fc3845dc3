package etcdlocal

import (
	"context"
	"net"
	"testing"
)

// TestStartRetriesTakenPort: when a port picked for a member is taken
// before the member binds it (another test's server got it first), Start
// tries again on new ports and returns a cluster whose every member is
// healthy, not one that runs with a member missing.
func TestStartRetriesTakenPort(t *testing.T) {
	bin, err := Binary(".")
	if err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		ps, err := freePorts(n)
		if calls == 1 && err == nil {
			ps[2] = taken.Addr().(*net.TCPAddr).Port // member 2's client port
		}
		return ps, err
	}
	defer func() { pickPorts = freePorts }()
	c, err := Start(context.Background(), Options{Dir: t.TempDir(), Binary: bin})
	if err != nil {
		t.Fatalf("Start with a taken port: %v", err)
	}
	defer c.Stop()
	if calls != 2 {
		t.Fatalf("ports picked %d times, want 2 (a retry after the taken port)", calls)
	}
	for _, m := range c.Members {
		if !m.Running() {
			t.Fatalf("%s is not running", m.Name)
		}
	}
}
