//go:build lab

package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

// concurrentTopology is the transfer fabric with more hosts: a second
// checkpoint source (tx2) on leaf3, a fifth receiver (r5) on leaf2 and a
// plain stream's sender without an ID (px) on leaf1.
const concurrentTopology = `
switches:
  - {name: spine1, role: spine, id: 1001, ports: [p1, p2, p3]}
  - {name: spine2, role: spine, id: 1002, ports: [p1, p2, p3]}
  - {name: leaf1, role: leaf, id: 1011, ports: [p1, p2, h0, h1]}
  - {name: leaf2, role: leaf, id: 1012, ports: [p1, p2, h1, h2, h3]}
  - {name: leaf3, role: leaf, id: 1013, ports: [p1, p2, h1, h2, h3]}
links:
  - {a: spine1:p1, b: leaf1:p1}
  - {a: spine2:p1, b: leaf1:p2}
  - {a: spine1:p2, b: leaf2:p1}
  - {a: spine2:p2, b: leaf2:p2}
  - {a: spine1:p3, b: leaf3:p1}
  - {a: spine2:p3, b: leaf3:p2}
hosts:
  - {name: tx, attach: leaf1:h0, id: 100, ips: [10.0.1.100]}
  - {name: px, attach: leaf1:h1, ips: [10.0.1.101]}
  - {name: r1, attach: leaf2:h1, id: 1, ips: [10.0.2.1]}
  - {name: r2, attach: leaf2:h2, id: 2, ips: [10.0.2.2]}
  - {name: r5, attach: leaf2:h3, id: 3, ips: [10.0.2.3]}
  - {name: r3, attach: leaf3:h1, id: 64, ips: [10.0.3.1]}
  - {name: r4, attach: leaf3:h2, id: 65, ips: [10.0.3.2]}
  - {name: tx2, attach: leaf3:h3, id: 66, ips: [10.0.3.3]}
`

// TestConcurrentSenders runs several senders at once on one fabric. First
// two checkpoint copies from different hosts (on different leaves) to
// overlapping receiver sets, with 3% loss on every receiver's port (a
// runtime fault), so both streams need repairs through the same switches:
// every file is byte-exact where it was sent, and each copy's accounting
// is its own. Then a MoE run and a plain stream at the same time, on
// disjoint hosts: every token reaches its experts, and the stream loses
// nothing.
func TestConcurrentSenders(t *testing.T) {
	bin := buildBinary(t)
	cleanup(t)
	topo, err := control.ParseTopology([]byte(concurrentTopology))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f, err := StartFabric(ctx, FabricOptions{Topology: topo, Binary: bin, Prefix: labPrefix, Dir: t.TempDir(), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	t.Run("checkpoints", func(t *testing.T) {
		receivers := []string{"r1", "r2", "r3", "r4", "r5"}
		for _, r := range receivers {
			h := f.Topo.Hosts[hostIndex(f.Topo, r)]
			sw := f.Topo.Switches[h.Switch]
			if err := f.SetFault(ctx, sw.Name, sw.Ports[h.Port].Name, 0.03, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		defer func() {
			for _, r := range receivers {
				h := f.Topo.Hosts[hostIndex(f.Topo, r)]
				sw := f.Topo.Switches[h.Switch]
				if err := f.SetFault(ctx, sw.Name, sw.Ports[h.Port].Name, 0, 0); err != nil {
					t.Error(err)
				}
			}
		}()
		res, err := CopiesOn(ctx, f, CopiesOptions{Copies: []CopySpec{
			{Sender: "tx", Receivers: []string{"r1", "r2", "r3"}},
			{Sender: "tx2", Receivers: []string{"r2", "r3", "r4", "r5"}},
		}, Log: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", res.Table())
		if !res.DeliveredOK {
			t.Fatalf("delivered_ok false (logs in %s)", f.Dir)
		}
		if res.Copies[0].Session == res.Copies[1].Session {
			t.Errorf("both copies ran on session %d", res.Copies[0].Session)
		}
		for _, c := range res.Copies {
			if !strings.Contains(string(c.Summary), `"retransmissions"`) {
				t.Errorf("%s: summary %s", c.Sender, c.Summary)
			}
		}
	})

	t.Run("moe+stream", func(t *testing.T) {
		type moeOut struct {
			res *MoEResult
			err error
		}
		done := make(chan moeOut, 1)
		stream := []*FabricHost{f.Hosts["r4"], f.Hosts["r5"]}
		res, err := f.Stream(ctx, StreamOptions{Sender: "px", SourceID: 200, Receivers: stream, Rate: 1000, Duration: 3 * time.Second,
			Started: func() {
				go func() {
					r, err := MoEOn(ctx, f, MoEOptions{Tokens: 1500, TopK: 2, Dispatchers: []string{"tx", "tx2"},
						Experts: []string{"r1", "r2", "r3"}, Timeout: time.Minute, Log: t.Logf})
					done <- moeOut{r, err}
				}()
			}})
		if err != nil {
			t.Fatal(err)
		}
		m := <-done
		if m.err != nil {
			t.Fatal(m.err)
		}
		t.Logf("\n%s", m.res.Table())
		if !m.res.DeliveredOK || len(m.res.Dispatchers) != 2 {
			t.Errorf("MoE: delivered_ok %v, %d dispatchers", m.res.DeliveredOK, len(m.res.Dispatchers))
		}
		for _, d := range m.res.Dispatchers {
			if !d.Complete || d.Tokens != 1500 || len(d.Failed) != 0 {
				t.Errorf("dispatcher %s: %+v", d.Host, d)
			}
		}
		if res.Sent != 3000 {
			t.Errorf("stream sent %d, want 3000", res.Sent)
		}
		checkLosses(t, f, res)
	})
}

func hostIndex(t *control.Topology, name string) int {
	for i, h := range t.Hosts {
		if h.Name == name {
			return i
		}
	}
	return -1
}
