//go:build lab

package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

// One control process per switch on a shared etcd, as on white boxes: a
// group set through one control's API reaches every switch, a link failure
// one switch reports is recomputed by every control, and with etcd stopped
// for 10 s forwarding loses nothing, writes are refused with 503, and every
// control catches up when etcd is back.
func TestControlPerSwitchOnEtcd(t *testing.T) {
	if _, err := exec.LookPath(EtcdBinary); err != nil {
		t.Skip("no etcd (testbeds/setup-debian.sh installs Debian's etcd-server)")
	}
	dir := t.TempDir()
	topoPath := filepath.Join(dir, "transfer.yaml")
	if err := os.WriteFile(topoPath, []byte(transferTopology), 0o644); err != nil {
		t.Fatal(err)
	}
	topo, err := control.LoadTopology(topoPath)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	f, err := StartFabric(sctx, FabricOptions{
		Topology: topo, TopologyPath: topoPath, Binary: buildBinary(t), Prefix: labPrefix,
		Dir: dir, Control: true, PerSwitch: true, Log: t.Logf,
	})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if left, _ := Namespaces(context.Background(), labPrefix); len(left) != 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	ctx := context.Background()
	clients := map[string]*control.Client{}
	for _, sw := range topo.Switches {
		c, err := control.NewClient("unix:"+f.ControlAPIs[sw.Name], "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[sw.Name] = c
	}
	// everywhere waits until cond holds for every control's status.
	everywhere := func(what string, limit time.Duration, cond func(*control.Status, *control.Client) bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for _, sw := range topo.Switches {
			for {
				st, err := clients[sw.Name].Status(ctx)
				if err == nil && cond(st, clients[sw.Name]) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: not on %s's control: %+v %v", what, sw.Name, st, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	hasGroup := func(id uint32, m []uint16) func(*control.Status, *control.Client) bool {
		return func(st *control.Status, c *control.Client) bool {
			g, err := c.Group(ctx, id)
			return err == nil && slices.Equal(g.Members, m) && st.Switches[0].InSync
		}
	}
	var names []string
	var ids []uint16
	for _, h := range f.Receivers() {
		if h.Name != "tx" {
			names, ids = append(names, h.Name), append(ids, h.ID)
		}
	}

	// A group through leaf1's API: in every control, every switch in sync
	// with it, and a group transfer through spines and leaves byte-exact.
	if _, err := clients["leaf1"].SetGroup(ctx, 7, ids); err != nil {
		t.Fatal(err)
	}
	everywhere("group 7", 20*time.Second, hasGroup(7, ids))
	res, err := TransferOn(ctx, f, TransferOptions{Sender: "tx", Receivers: names, UseGroup: true, Group: 7, Size: 512 << 10, Timeout: time.Minute, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DeliveredOK {
		t.Fatalf("group transfer:\n%s", res.Table())
	}

	// API -> every control has it and its switch applied it, by polling
	// (an upper bound: each poll is an API round trip on a loaded machine).
	var lat []time.Duration
	for i := range 30 {
		id := uint32(200 + i)
		m := ids[:1+i%len(ids)]
		start := time.Now()
		if _, err := clients["leaf1"].SetGroup(ctx, id, m); err != nil {
			t.Fatal(err)
		}
		everywhere("group update", 20*time.Second, hasGroup(id, m))
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("group update through leaf1's API until every switch's control has applied it (polled): p50 %v, p99 %v (%d updates)",
		lat[len(lat)/2], lat[len(lat)*99/100], len(lat))

	// leaf2 loses its link to spine1: every control, leaf2's included,
	// computes without it; back up, without it no more.
	if err := SetLinkDown(f.SwitchNS["leaf2"], "p1", true, nil); err != nil {
		t.Fatal(err)
	}
	everywhere("link down", 20*time.Second, func(st *control.Status, _ *control.Client) bool { return len(st.DownLinks) == 1 })
	if err := SetLinkDown(f.SwitchNS["leaf2"], "p1", false, nil); err != nil {
		t.Fatal(err)
	}
	everywhere("link up", 20*time.Second, func(st *control.Status, _ *control.Client) bool { return len(st.DownLinks) == 0 })

	// etcd stopped for 10 s under a stream.
	var refused error
	stream, err := f.Stream(ctx, StreamOptions{
		Sender: "tx", SourceID: 100, Receivers: receiversOf(f, names), Rate: 1000, Duration: 14 * time.Second,
		Settle: time.Second, At: time.Second,
		Do: func() error {
			stopped := time.Now()
			if err := f.StopEtcd(); err != nil {
				return err
			}
			_, refused = clients["leaf3"].SetGroup(ctx, 9, ids[:1])
			time.Sleep(10*time.Second - time.Since(stopped))
			return f.StartEtcd(ctx)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLosses(t, f, stream) // with etcd stopped
	var ce *control.ClientError
	if !errors.As(refused, &ce) || ce.Status != 503 || ce.Class != "store_unavailable" {
		t.Errorf("write with etcd stopped: %v, want HTTP 503 store_unavailable", refused)
	} else {
		t.Logf("write with etcd stopped: %v", refused)
	}
	everywhere("caught up after etcd's return", 30*time.Second, func(st *control.Status, _ *control.Client) bool {
		return st.Store != nil && st.Store.Connected && st.Store.CaughtUp
	})
	if _, err := clients["leaf3"].SetGroup(ctx, 9, ids[:1]); err != nil {
		t.Fatalf("write after etcd's return: %v", err)
	}
	everywhere("group 9 after etcd's return", 20*time.Second, hasGroup(9, ids[:1]))
}

func receiversOf(f *Fabric, names []string) []*FabricHost {
	var hs []*FabricHost
	for _, n := range names {
		hs = append(hs, f.Hosts[n])
	}
	return hs
}
