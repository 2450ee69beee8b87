// Package gen writes fabric descriptions (control's topology YAML) for
// fabrics too big to write by hand: `sparsecast testbed gen fattree`.
package gen

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// MaxFatTreeK is the largest fat-tree FatTree writes: k^3/4 hosts must fit
// in SMH's 16-bit receiver IDs (65,536 at k=64, every ID used); a switch's
// k ports would fit up to k=254 (port index one byte, 0xFF reserved).
const MaxFatTreeK = 64

// FatTreeCounts are the sizes of a k-ary 3-tier fat-tree.
type FatTreeCounts struct {
	K                          int
	Pods                       int
	Edges, Aggs, Cores         int // edges (leaves) and aggs in all pods
	Switches                   int
	Hosts                      int
	EdgeAggLinks, AggCoreLinks int
	Links                      int // switch-to-switch links
	PortsPerSwitch             int
}

// FatTreeSize returns the counts of the k-ary fat-tree: k pods of k/2 edge
// (leaf) and k/2 agg switches, (k/2)^2 cores, k/2 hosts per edge.
func FatTreeSize(k int) (FatTreeCounts, error) {
	if k < 2 || k%2 != 0 || k > MaxFatTreeK {
		return FatTreeCounts{}, fmt.Errorf("fat-tree k=%d: want an even k from 2 to %d (k^3/4 hosts, at most 65,536 receiver IDs)", k, MaxFatTreeK)
	}
	h := k / 2
	c := FatTreeCounts{K: k, Pods: k, Edges: k * h, Aggs: k * h, Cores: h * h, Hosts: k * h * h,
		EdgeAggLinks: k * h * h, AggCoreLinks: k * h * h, PortsPerSwitch: k}
	c.Switches = c.Edges + c.Aggs + c.Cores
	c.Links = c.EdgeAggLinks + c.AggCoreLinks
	return c, nil
}

// FatTreeKForHosts returns the k whose fat-tree has exactly hosts hosts
// (1,024: 16; 8,192: 32; 65,536: 64).
func FatTreeKForHosts(hosts int) (int, error) {
	if hosts > 0 {
		k := int(math.Round(math.Cbrt(float64(hosts) * 4)))
		if k%2 == 0 && k >= 2 && k*k*k/4 == hosts && k <= MaxFatTreeK {
			return k, nil
		}
	}
	var sizes []string
	for k := 2; k <= MaxFatTreeK; k += 2 {
		if k >= 8 && k%8 != 0 {
			continue
		}
		sizes = append(sizes, strconv.Itoa(k*k*k/4))
	}
	return 0, fmt.Errorf("--hosts %d: a k-ary fat-tree has k^3/4 hosts for even k up to %d (%s, ...)", hosts, MaxFatTreeK, strings.Join(sizes, ", "))
}

// Names of a fat-tree's switches and hosts, as FatTree writes them.
func CoreName(c int) string      { return "core" + strconv.Itoa(c) }
func AggName(pod, a int) string  { return "p" + strconv.Itoa(pod) + "-agg" + strconv.Itoa(a) }
func EdgeName(pod, e int) string { return "p" + strconv.Itoa(pod) + "-edge" + strconv.Itoa(e) }
func HostName(pod, e, h int) string {
	return "p" + strconv.Itoa(pod) + "e" + strconv.Itoa(e) + "h" + strconv.Itoa(h)
}

// FatTree writes the k-ary 3-tier fat-tree as a topology file, laid out as
// testbeds/fattree.yaml (k=4) is:
//
//   - switches: the cores, then per pod its aggs and its edges (role leaf);
//   - edge e of pod p: ports u0..u(k/2-1) to the pod's aggs, then h0.. to
//     its hosts; agg a: ports d0.. to the pod's edges, u0.. to cores
//     a*k/2 .. a*k/2+k/2-1; core c: port p<pod> to agg c/(k/2) of each pod;
//   - links: every edge-agg link (pod, edge, agg order), then every
//     agg-core link (pod, agg, core order);
//   - hosts: p<pod>e<edge>h<n>, IP 10.<pod+1>.<edge>.<n+1>, MAC
//     02:00:<pod>:<edge>:<n>:01 and receiver ID (pod*k/2+edge)*k/2+n:
//     each edge's hosts consecutive, edges packed one after another, so
//     every ID 0-65535 is used at k=64 (the loader's default, a 64-aligned
//     block per leaf, would need 131,072 there).
func FatTree(w io.Writer, k int) error {
	c, err := FatTreeSize(k)
	if err != nil {
		return err
	}
	h := k / 2
	var b strings.Builder
	b.Grow(c.Hosts*110 + c.Links*50 + c.Switches*80)
	fmt.Fprintf(&b, "# A 3-tier fat-tree, k=%d: %d pods of %d edge (leaf) and %d agg switches,\n", k, k, h, h)
	fmt.Fprintf(&b, "# %d core switches, %d hosts per edge (%d hosts, %d switch links).\n", c.Cores, h, c.Hosts, c.Links)
	fmt.Fprintf(&b, "# Written by `sparsecast testbed gen fattree --k %d`.\n", k)
	b.WriteString("switches:\n")
	for ci := range c.Cores {
		fmt.Fprintf(&b, "  - {name: %s, role: core}\n", CoreName(ci))
	}
	for p := range k {
		for a := range h {
			fmt.Fprintf(&b, "  - {name: %s, role: agg}\n", AggName(p, a))
		}
		for e := range h {
			fmt.Fprintf(&b, "  - {name: %s, role: leaf}\n", EdgeName(p, e))
		}
	}
	b.WriteString("links:\n")
	for p := range k {
		for e := range h {
			for a := range h {
				fmt.Fprintf(&b, "  - {a: %s:u%d, b: %s:d%d}\n", EdgeName(p, e), a, AggName(p, a), e)
			}
		}
	}
	for p := range k {
		for a := range h {
			for u := range h {
				fmt.Fprintf(&b, "  - {a: %s:u%d, b: %s:p%d}\n", AggName(p, a), u, CoreName(a*h+u), p)
			}
		}
	}
	b.WriteString("hosts:\n")
	for p := range k {
		for e := range h {
			for n := range h {
				id := (p*h+e)*h + n
				fmt.Fprintf(&b, "  - {name: %s, attach: %s:h%d, id: %d, ips: [10.%d.%d.%d], mac: \"02:00:%02x:%02x:%02x:01\"}\n",
					HostName(p, e, n), EdgeName(p, e), n, id, p+1, e, n+1, p, e, n)
			}
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}
