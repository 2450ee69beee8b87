package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/headers"
)

func TestHeaderSizeFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    headerSizeOptions
		wantErr string
	}{
		{"long", []string{"--receivers", "9", "--domain", "256"},
			headerSizeOptions{Receivers: 9, Domain: 256, Seed: 1}, ""},
		{"short, all", []string{"-k", "64", "-n", "8192", "--clustered", "--seed", "7", "--json"},
			headerSizeOptions{Receivers: 64, Domain: 8192, Clustered: true, Seed: 7, JSON: true}, ""},
		{"table", []string{"--table"}, headerSizeOptions{Seed: 1, Table: true}, ""},
		{"table seed", []string{"--table", "--seed", "3"}, headerSizeOptions{Seed: 3, Table: true}, ""},
		{"missing domain", []string{"-k", "9"}, headerSizeOptions{}, "required"},
		{"missing both", nil, headerSizeOptions{}, "required"},
		{"table and receivers", []string{"--table", "-k", "9"}, headerSizeOptions{}, "none of the others"},
		{"not a number", []string{"-k", "nine", "-n", "256"}, headerSizeOptions{}, "invalid argument"},
		{"stray argument", []string{"-k", "9", "-n", "256", "extra"}, headerSizeOptions{}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *headerSizeOptions
			cmd := newCmdHeaderSize(func(o *headerSizeOptions) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if got != nil {
					t.Error("runF called despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Fatal("runF not called")
			}
			if got.Out == nil {
				t.Error("Out not set")
			}
			got.Out = nil
			if *got != tc.want {
				t.Errorf("options %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func TestHeaderCmdWiring(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"header", "size", "-k", "9", "-n", "256", "--json"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	for _, k := range []string{"smh_bytes", "bier_bytes_total", "bier_packets", "smh_encoding", "bier_bsl", "receivers", "domain"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
}

func runSize(t *testing.T, o headerSizeOptions) string {
	t.Helper()
	var out bytes.Buffer
	o.Out = &out
	if err := runHeaderSize(&o); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestHeaderSizeTargets checks the sizes the design promises, over many
// seeds so that no lucky draw passes it.
func TestHeaderSizeTargets(t *testing.T) {
	for _, tc := range []struct {
		k, n, max int
	}{
		{9, 256, 32},
		{64, 8192, 160},
		{9, 65536, 40},
	} {
		for seed := uint64(1); seed <= 50; seed++ {
			var r sizeResult
			js := runSize(t, headerSizeOptions{Receivers: tc.k, Domain: tc.n, Seed: seed, JSON: true})
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				t.Fatal(err)
			}
			if r.SMHBytes > tc.max {
				t.Errorf("k=%d N=%d seed %d: SMH %d bytes, want <= %d", tc.k, tc.n, seed, r.SMHBytes, tc.max)
			}
			checkResult(t, r, tc.k, tc.n, false)
		}
	}
}

// checkResult recomputes a result independently: the IDs it reports, an SMH
// header built and decoded by the gopacket layer, and the BIER count.
func checkResult(t *testing.T, r sizeResult, k, n int, clustered bool) {
	t.Helper()
	ids, err := headers.ParseIDSet(r.IDs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != k || int(ids[len(ids)-1]) >= n || r.Receivers != k || r.Domain != n {
		t.Fatalf("k=%d N=%d: got %d IDs up to %d (%+v)", k, n, len(ids), ids[len(ids)-1], r)
	}
	if clustered && (ids[0]%64 != 0 || int(ids[k-1]-ids[0]) != k-1) {
		t.Errorf("clustered IDs %s are not consecutive from a 64-aligned start", r.IDs)
	}
	l := headers.SMHLayer{Type: headers.TypeData, Receivers: ids}
	l.UseSmallerEncoding()
	if l.HeaderLen() != r.SMHBytes || l.Encoding.String() != r.SMHEncoding {
		t.Errorf("layer says %d bytes %v; result %d %s", l.HeaderLen(), l.Encoding, r.SMHBytes, r.SMHEncoding)
	}
	list, blocks := headers.FixedLen+2*k, headers.FixedLen+10*headers.BlockCount(ids)
	if r.SMHBytes != min(list, blocks) {
		t.Errorf("SMH %d bytes; list %d, blocks %d", r.SMHBytes, list, blocks)
	}
	// BIER: the headline is the domain's BSL; recount SIs by brute force at
	// it, and check the reported best is no worse than any BSL.
	if want := headers.BIERDomainBSL(n); r.BIERBSL != want {
		t.Errorf("N=%d: BIER at BSL %d, the domain's is %d", n, r.BIERBSL, want)
	}
	si := map[int]bool{}
	for _, id := range ids {
		si[int(id)/r.BIERBSL] = true
	}
	if len(si) != r.BIERPackets || r.BIERBytesTotal != len(si)*(12+r.BIERBSL/8) {
		t.Errorf("BIER BSL %d: %d SIs, result %d packets %d bytes", r.BIERBSL, len(si), r.BIERPackets, r.BIERBytesTotal)
	}
	if len(r.BIERPerBSL) != 7 {
		t.Fatalf("per-BSL results: %d", len(r.BIERPerBSL))
	}
	for _, c := range r.BIERPerBSL {
		if c.TotalBytes < r.BIERBestBytesTotal {
			t.Errorf("BSL %d costs %d < best %d", c.BSL, c.TotalBytes, r.BIERBestBytesTotal)
		}
		if c.BSL == r.BIERBestBSL && c.TotalBytes != r.BIERBestBytesTotal {
			t.Errorf("best BSL %d: %d bytes, per-BSL says %d", c.BSL, r.BIERBestBytesTotal, c.TotalBytes)
		}
	}
}

func TestHeaderSizeClustered(t *testing.T) {
	for _, tc := range []struct{ k, n int }{{9, 256}, {64, 8192}, {1, 1}, {256, 256}, {100, 130}, {65536, 65536}, {9, 65536}} {
		for seed := uint64(1); seed <= 5; seed++ {
			r, err := headerSize(tc.k, tc.n, true, seed)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, r, tc.k, tc.n, true)
			if tc.k <= 64 && r.SMHEncoding != "blocks" && tc.k > 5 {
				t.Errorf("k=%d clustered uses %s", tc.k, r.SMHEncoding)
			}
		}
	}
	r, _ := headerSize(9, 256, true, 1)
	if r.SMHBytes != headers.FixedLen+headers.BlockEntryLen {
		t.Errorf("9 under one leaf: %d bytes, want one block", r.SMHBytes)
	}
}

func TestHeaderSizeReproducible(t *testing.T) {
	a := runSize(t, headerSizeOptions{Receivers: 64, Domain: 8192, Seed: 1})
	b := runSize(t, headerSizeOptions{Receivers: 64, Domain: 8192, Seed: 1})
	c := runSize(t, headerSizeOptions{Receivers: 64, Domain: 8192, Seed: 2})
	if a != b {
		t.Error("same seed, different output")
	}
	if a == c {
		t.Error("different seeds, same draw")
	}
	for _, want := range []string{"64 of 8192, random (seed 1)", "SMH        142 bytes", "BIER", "BSL"} {
		if !strings.Contains(a, want) {
			t.Errorf("output lacks %q:\n%s", want, a)
		}
	}
}

func TestHeaderSizeRandomCoversDomain(t *testing.T) {
	// k = N must return every ID once; small domains must not loop forever.
	for _, n := range []int{1, 2, 63, 64, 65, 1000} {
		ids := pickIDs(n, n, false, 9)
		want := make([]uint16, n)
		for i := range want {
			want[i] = uint16(i)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("k=N=%d: %v", n, ids)
		}
	}
	ids := pickIDs(65536, 65536, false, 1)
	if len(ids) != 65536 || ids[65535] != 65535 {
		t.Errorf("full domain: %d ids", len(ids))
	}
}

func TestHeaderSizeErrors(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		want string
	}{
		{0, 256, "--receivers 0"},
		{-1, 256, "--receivers -1"},
		{257, 256, "--receivers 257"},
		{9, 0, "--domain 0"},
		{9, 65537, "--domain 65537"},
	} {
		o := headerSizeOptions{Receivers: tc.k, Domain: tc.n, Out: &bytes.Buffer{}}
		err := runHeaderSize(&o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("k=%d N=%d: error %v, want %q", tc.k, tc.n, err, tc.want)
		}
	}
}

func TestHeaderSizeTable(t *testing.T) {
	out := runSize(t, headerSizeOptions{Table: true, Seed: 1})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rows []string
	for _, l := range lines {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| receivers") {
			rows = append(rows, l)
		}
	}
	if len(rows) != len(sizeCases) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(sizeCases), out)
	}
	for i, c := range sizeCases {
		r, err := headerSize(c.k, c.n, c.clustered, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"| " + strconv.Itoa(c.k) + " of " + strconv.Itoa(c.n) + ",",
			"= " + strconv.Itoa(r.SMHBytes) + " B (" + r.SMHEncoding + ")",
			strconv.Itoa(r.BIERBytesTotal) + " B: " + strconv.Itoa(r.BIERPackets) + " packet(s)",
		} {
			if !strings.Contains(rows[i], want) {
				t.Errorf("row %d %q lacks %q", i, rows[i], want)
			}
		}
	}
}
