package control

import (
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// failingStore is a StateStore whose writes fail while broken is set.
type failingStore struct {
	mu     sync.Mutex
	groups map[uint32][]uint16
	broken bool
}

func (f *failingStore) LoadGroups() (map[uint32][]uint16, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.groups), nil
}

func (f *failingStore) PutGroup(id uint32, m []uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		return errors.New("write /state/control.db: no space left on device")
	}
	f.groups[id] = slices.Clone(m)
	return nil
}

func (f *failingStore) DeleteGroup(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		return errors.New("write /state/control.db: no space left on device")
	}
	delete(f.groups, id)
	return nil
}

func (f *failingStore) Describe() string { return "/state/control.db" }
func (f *failingStore) Close() error     { return nil }

// A restarted control's first full resync already carries the stored
// groups: no switch is ever pushed an empty group table.
func TestServerLoadsStoredGroupsBeforeFirstResync(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	dir := t.TempDir()
	st := openStore(t, dir)
	ff := newFakeFabric(topo, 0xb1)
	s := startServer(t, topo, ff, ServerOptions{Switches: []string{"leaf2"}, Store: st})
	if _, err := s.SetGroup(7, []uint16{1, 2, 3}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddMembers(8, []uint16{4}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveMembers(7, []uint16{2}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetGroup(9, []uint16{1}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGroup(9, 0); err != nil {
		t.Fatal(err)
	}
	want := map[uint32][]uint16{7: {1, 3}, 8: {4}}
	if got := loadAll(t, st); !sameGroups(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	st.Close()

	// "Restart": a new server on the same state, and a new fabric whose
	// rings record from nothing.
	st = openStore(t, dir)
	defer st.Close()
	ff2 := newFakeFabric(topo, 0xb2)
	s2 := startServer(t, topo, ff2, ServerOptions{Switches: []string{"leaf2"}, Store: st})
	leaf2 := ff2.ring("leaf2")
	eventually(t, "first resync", func() bool { return len(leaf2.all()) >= 1 })
	first := leaf2.all()[0]
	if first.kind != PushFullKind || !sameGroups(first.full.Groups, want) {
		t.Fatalf("first push after the restart: %+v", first)
	}
	if got := s2.Groups(); len(got) != 2 || got[0].ID != 7 || !slices.Equal(got[0].Members, []uint16{1, 3}) {
		t.Fatalf("groups after the restart: %+v", got)
	}
	if s2.Status().State != st.Describe() {
		t.Errorf("status state %q", s2.Status().State)
	}
}

// A stored group whose members the topology no longer has stops the start
// with the group named, rather than push members no switch can route.
func TestServerRefusesStoredGroupsTheTopologyLacks(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	fs := &failingStore{groups: map[uint32][]uint16{5: {1, 200}}}
	_, err := NewServer(topo, ServerOptions{Store: fs})
	if err == nil || !strings.Contains(err.Error(), "group 5") || !strings.Contains(err.Error(), "200") {
		t.Fatalf("NewServer: %v", err)
	}
}

// A change the store cannot take is refused with 503 and not made: not in
// the server's groups, not pushed to any switch.
func TestServerStoreFailureRefusesChange(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	fs := &failingStore{groups: map[uint32][]uint16{5: {1}}}
	ff := newFakeFabric(topo, 0xb1)
	s := startServer(t, topo, ff, ServerOptions{Switches: []string{"leaf2"}, Store: fs})
	leaf2 := ff.ring("leaf2")
	eventually(t, "in sync", func() bool { return len(s.Status().Switches) == 1 && s.Status().Switches[0].InSync })
	pushed := len(leaf2.all())
	fs.mu.Lock()
	fs.broken = true
	fs.mu.Unlock()

	hs := httptest.NewServer(s.Handler(testToken))
	defer hs.Close()
	for _, req := range []struct{ method, path, body string }{
		{"PUT", "/v1/groups/6", `{"members":[1,2]}`},
		{"POST", "/v1/groups/5/members", `{"members":[2]}`},
		{"DELETE", "/v1/groups/5/members", `{"members":[1]}`},
		{"DELETE", "/v1/groups/5", ""},
	} {
		r, _ := http.NewRequest(req.method, hs.URL+req.path, strings.NewReader(req.body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		body.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body.String(), `"class":"store_unavailable"`) ||
			!strings.Contains(body.String(), "no space left on device") {
			t.Errorf("%s %s: %d %s", req.method, req.path, resp.StatusCode, body.String())
		}
	}
	if got := s.Groups(); len(got) != 1 || got[0].ID != 5 || !slices.Equal(got[0].Members, []uint16{1}) {
		t.Errorf("groups changed by refused writes: %+v", got)
	}
	if n := len(leaf2.all()); n != pushed {
		t.Errorf("%d pushes for refused writes", n-pushed)
	}
	if n := s.storeWrites[1].Load(); n != 4 {
		t.Errorf("failed store writes %d, want 4", n)
	}
	// Repaired: the same change goes through.
	fs.mu.Lock()
	fs.broken = false
	fs.mu.Unlock()
	if _, err := s.SetGroup(6, []uint16{1, 2}, 0); err != nil {
		t.Fatal(err)
	}
	if g, _ := fs.LoadGroups(); !slices.Equal(g[6], []uint16{1, 2}) {
		t.Errorf("stored %v", g)
	}
}

// With a store, the collector shows its writes; the store_unavailable
// refusals are counted among the API errors by the API.
func TestStoreWritesMetric(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	fs := &failingStore{groups: map[uint32][]uint16{}}
	s, err := NewServer(topo, ServerOptions{Switches: []string{"leaf1"}, Store: fs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetGroup(1, []uint16{1}, 0); err != nil {
		t.Fatal(err)
	}
	fs.broken = true
	if _, err := s.SetGroup(2, []uint16{1}, 0); err == nil {
		t.Fatal("write to a broken store accepted")
	}
	want := `
# HELP sparsecast_control_store_writes_total Group changes written to the state store, by result: ok, failed (the change was refused with HTTP 503).
# TYPE sparsecast_control_store_writes_total counter
sparsecast_control_store_writes_total{result="failed"} 1
sparsecast_control_store_writes_total{result="ok"} 1
`
	if err := testutil.CollectAndCompare(s.Collector(), strings.NewReader(want), "sparsecast_control_store_writes_total"); err != nil {
		t.Fatal(err)
	}
}
