package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sparsecast/sparsecast/headers"
)

// testEtcd is a single-member etcd (Debian's etcd-server, on PATH) on
// loopback ports with a data directory of its own.
type testEtcd struct {
	t          testing.TB
	dir        string
	client     string
	peer       string
	cmd        *exec.Cmd
	log        *os.File
	stopped    chan struct{}
	stopOnce   sync.Once
	restarts   int
	clientPort int
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startEtcd(t testing.TB) *testEtcd {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("no etcd on PATH (Debian: apt-get install etcd-server; testbeds/setup-debian.sh installs it)")
	}
	e := &testEtcd{t: t, dir: t.TempDir()}
	e.clientPort = freePort(t)
	e.client = fmt.Sprintf("127.0.0.1:%d", e.clientPort)
	e.peer = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *testEtcd) start() {
	e.t.Helper()
	lf, err := os.OpenFile(filepath.Join(e.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cmd = exec.Command("etcd", "--name", "t", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", "http://"+e.client, "--advertise-client-urls", "http://"+e.client,
		"--listen-peer-urls", e.peer, "--initial-advertise-peer-urls", e.peer,
		"--initial-cluster", "t="+e.peer)
	e.cmd.Stdout, e.cmd.Stderr = lf, lf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.log = lf
	e.stopped = make(chan struct{})
	e.stopOnce = sync.Once{}
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(e.cmd, e.stopped)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.client}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "probe")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(e.dir, "etcd.log"))
			e.t.Fatalf("etcd did not come up: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *testEtcd) stop() {
	e.stopOnce.Do(func() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.stopped:
		case <-time.After(10 * time.Second):
			e.cmd.Process.Kill()
			<-e.stopped
		}
		e.log.Close()
	})
}

func openEtcd(t testing.TB, e *testEtcd, prefix string) *EtcdStore {
	t.Helper()
	s, err := OpenEtcdStore(EtcdOptions{Endpoints: []string{e.client}, Prefix: prefix, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func hasGroupOp(r *fakeRing, id uint32, members []uint16) bool {
	for _, b := range r.all() {
		if b.kind == PushFullKind && slices.Equal(b.full.Groups[id], members) {
			return true
		}
		for _, op := range b.ops {
			if op.Group == id && op.Kind == GroupSet && slices.Equal(op.Members, members) {
				return true
			}
		}
	}
	return false
}

// Two control processes, each serving its own switch, share the state in
// etcd: a group set through one reaches the other's switch, a link one
// switch reports down makes the other recompute, and with etcd stopped
// writes are refused with store_unavailable and everything catches up
// when it is back.
func TestEtcdStoreTwoControls(t *testing.T) {
	e := startEtcd(t)
	topo := testbed(t, "failover.yaml")
	ffA, ffB := newFakeFabric(topo, 0xa1), newFakeFabric(topo, 0xb1)
	a := startServer(t, topo, ffA, ServerOptions{Switches: []string{"leaf1"}, Store: openEtcd(t, e, "/t1/")})
	b := startServer(t, topo, ffB, ServerOptions{Switches: []string{"spine1", "leaf2"}, Store: openEtcd(t, e, "/t1/")})

	if _, err := a.SetGroup(7, []uint16{1, 2}, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "group 7 on B's leaf2", func() bool { return hasGroupOp(ffB.ring("leaf2"), 7, []uint16{1, 2}) })
	if _, err := b.AddMembers(7, []uint16{4}, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B's member add on A", func() bool {
		g, err := a.GetGroup(7)
		return err == nil && slices.Equal(g.Members, []uint16{1, 2, 4})
	})

	// leaf2 (served by B) loses its link to spine1 (p1, port 0): A, which
	// serves leaf1 only, recomputes leaf1 without that link.
	before := len(ffA.ring("leaf1").all())
	ffB.ring("leaf2").send(Event{Kind: "link", Port: 0, LinkState: headers.LinkDown})
	eventually(t, "A sees the link down", func() bool { return len(a.Status().DownLinks) == 1 })
	eventually(t, "A pushes leaf1 new routes", func() bool {
		for _, bt := range ffA.ring("leaf1").all()[before:] {
			if bt.kind == PushRoutesKind {
				return true
			}
		}
		return false
	})

	// etcd stopped: writes refused, the switches untouched.
	e.stop()
	_, err := a.SetGroup(8, []uint16{3}, 0)
	var re *RequestError
	if !errors.As(err, &re) || re.Class != "store_unavailable" {
		t.Fatalf("write with etcd down: %v", err)
	}
	if _, err := a.GetGroup(8); err == nil {
		t.Fatal("refused group 8 exists")
	}
	eventually(t, "A's store disconnected", func() bool { h := a.Status().Store; return h != nil && !h.Connected && h.Error != "" })
	if err := testutil.CollectAndCompare(a.Collector(), strings.NewReader(`
# HELP sparsecast_control_store_connected 1 while the shared store (etcd) answers, 0 while it does not (group changes are refused).
# TYPE sparsecast_control_store_connected gauge
sparsecast_control_store_connected 0
`), "sparsecast_control_store_connected"); err != nil {
		t.Error(err)
	}

	// Back: a write through B reaches A, and both are caught up.
	e.start()
	eventually(t, "B's store connected", func() bool { h := b.Status().Store; return h.Connected })
	var setErr error
	eventually(t, "B's write after etcd's return", func() bool {
		_, setErr = b.SetGroup(9, []uint16{1, 3}, 0)
		return setErr == nil
	})
	eventually(t, "group 9 on A's leaf1", func() bool { return hasGroupOp(ffA.ring("leaf1"), 9, []uint16{1, 3}) })
	eventually(t, "both caught up", func() bool {
		ha, hb := a.Status().Store, b.Status().Store
		return ha.CaughtUp && hb.CaughtUp && ha.Revision == hb.Revision
	})
}

// A change made through another control between this one reading a group
// and writing it is refused, not overwritten.
func TestEtcdStoreConflict(t *testing.T) {
	e := startEtcd(t)
	s := openEtcd(t, e, "/t2/")
	if _, err := s.PutGroupIf(5, nil, false, []uint16{1}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutGroupIf(5, nil, false, []uint16{2}, false); !errors.Is(err, ErrStateConflict) {
		t.Fatalf("create over an existing group: %v", err)
	}
	if _, err := s.PutGroupIf(5, []uint16{3}, true, []uint16{2}, false); !errors.Is(err, ErrStateConflict) {
		t.Fatalf("change from a stale value: %v", err)
	}
	if _, err := s.PutGroupIf(5, []uint16{1}, true, nil, true); err != nil {
		t.Fatal(err)
	}
	g, err := s.LoadGroups()
	if err != nil || len(g) != 0 {
		t.Fatalf("after delete: %v %v", g, err)
	}
}

// A watch whose revision was compacted away reloads the whole state.
func TestEtcdStoreReloadAfterCompaction(t *testing.T) {
	e := startEtcd(t)
	s := openEtcd(t, e, "/t3/")
	w := openEtcd(t, e, "/t3/")
	if _, err := w.LoadGroups(); err != nil {
		t.Fatal(err)
	}
	for i := uint32(1); i <= 3; i++ {
		if err := s.PutGroup(i, []uint16{uint16(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteGroup(2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	got := make(chan StoreChange, 16)
	go w.Watch(ctx, func(c StoreChange) { got <- c })
	select {
	case c := <-got:
		if !c.Full || !sameGroups(c.Groups, map[uint32][]uint16{1: {1}, 3: {3}}) {
			t.Fatalf("first change after compaction: %+v", c)
		}
	case <-ctx.Done():
		t.Fatal("no reload after compaction")
	}
	if h := w.Health(); h.Reloads != 1 {
		t.Errorf("reloads %d", h.Reloads)
	}
}

func TestParseEtcdURL(t *testing.T) {
	eps, err := ParseEtcdURL("etcd://10.0.0.1:2379,h2:2379")
	if err != nil || !slices.Equal(eps, []string{"10.0.0.1:2379", "h2:2379"}) {
		t.Fatalf("%v %v", eps, err)
	}
	for _, bad := range []string{"", "etcd://", "http://h:1", "etcd://h", "etcd://h:1,", "etcd://u@h:1", "etcd://h:1/x"} {
		if _, err := ParseEtcdURL(bad); err == nil || !strings.Contains(err.Error(), "--store") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
