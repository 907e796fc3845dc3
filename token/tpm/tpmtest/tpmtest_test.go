package tpmtest

import (
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestStartRestart(t *testing.T) {
	sim := StartSim(t)
	addr := strings.TrimPrefix(sim.Spec, "tcp:")
	if err := probe(addr); err != nil {
		t.Fatalf("fresh swtpm: %v", err)
	}
	before := sim.Spec
	sim.Restart(t)
	if err := probe(strings.TrimPrefix(sim.Spec, "tcp:")); err != nil {
		t.Fatalf("restarted swtpm: %v", err)
	}
	t.Logf("spec before %s, after restart %s", before, sim.Spec)
	sim.Stop()
	if err := probe(addr); err == nil && sim.Spec == before {
		t.Fatal("stopped swtpm still answers")
	}
}

func TestStartParallel(t *testing.T) {
	var mu sync.Mutex
	specs := map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := Start(t)
			mu.Lock()
			defer mu.Unlock()
			if specs[spec] {
				t.Errorf("spec %s handed out twice", spec)
			}
			specs[spec] = true
		}()
	}
	wg.Wait()
	for spec := range specs {
		if err := probe(strings.TrimPrefix(spec, "tcp:")); err != nil {
			t.Errorf("%s: %v", spec, err)
		}
	}
}

func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if !listensOn(os.Getpid(), port) {
		t.Fatalf("listensOn(self, %d) = false", port)
	}
	sim := StartSim(t)
	simPort, _ := strconv.Atoi(sim.Spec[strings.LastIndex(sim.Spec, ":")+1:])
	if !listensOn(sim.cmd.Process.Pid, simPort) {
		t.Fatal("listensOn(swtpm, its port) = false")
	}
	if listensOn(sim.cmd.Process.Pid, port) {
		t.Fatal("listensOn(swtpm, a port it does not hold) = true")
	}
}
