package headers

import "testing"

func TestBIERSize(t *testing.T) {
	all := make([]uint16, 0, 65536)
	for i := range 65536 {
		all = append(all, uint16(i))
	}
	spread := make([]uint16, 9)
	for i := range spread {
		spread[i] = uint16(i * 4096)
	}
	// Totals per BSL 64, 128, 256, 512, 1024, 2048, 4096, worked out by
	// hand: packets = distinct id/BSL, bytes = packets * (12 + BSL/8), i.e.
	// 20, 28, 44, 76, 140, 268 and 524 bytes per packet.
	for _, tc := range []struct {
		name    string
		ids     []uint16
		packets [7]int
		best    BIERCost
	}{
		{"9 of 256 random", ids(t, "3,17,42,77,100,130,170,201,250"),
			[7]int{4, 2, 1, 1, 1, 1, 1}, BIERCost{256, 1, 44, 44}},
		{"9 under one leaf", ids(t, "64-72"),
			[7]int{1, 1, 1, 1, 1, 1, 1}, BIERCost{64, 1, 20, 20}},
		// BSL 64 (7 x 20) ties BSL 1024 (1 x 140): fewer packets wins.
		{"tie", ids(t, "0,128,256,384,512,640,768"),
			[7]int{7, 7, 4, 2, 1, 1, 1}, BIERCost{1024, 1, 140, 140}},
		{"both ends", ids(t, "0,65535"),
			[7]int{2, 2, 2, 2, 2, 2, 2}, BIERCost{64, 2, 20, 40}},
		{"9 in 9 SIs of 4096", spread,
			[7]int{9, 9, 9, 9, 9, 9, 9}, BIERCost{64, 9, 20, 180}},
		{"everyone", all,
			[7]int{1024, 512, 256, 128, 64, 32, 16}, BIERCost{4096, 16, 524, 8384}},
		{"duplicates and disorder", []uint16{300, 5, 5, 300},
			[7]int{2, 2, 2, 1, 1, 1, 1}, BIERCost{64, 2, 20, 40}},
		{"nobody", nil, [7]int{}, BIERCost{64, 0, 20, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			best, per := BIERSize(tc.ids)
			if best != tc.best {
				t.Errorf("best %+v, want %+v", best, tc.best)
			}
			for i, c := range per {
				bsl := 64 << i
				want := BIERCost{bsl, tc.packets[i], 12 + bsl/8, tc.packets[i] * (12 + bsl/8)}
				if c != want {
					t.Errorf("BSL %d: %+v, want %+v", bsl, c, want)
				}
			}
		})
	}
}

func TestBIERSizeNoAllocs(t *testing.T) {
	rx := ids(t, "0-100,4000-5000,65000-65535")
	if a := testing.AllocsPerRun(20, func() { BIERSize(rx) }); a != 0 {
		t.Errorf("%v allocs", a)
	}
}

func TestBIERDomainBSL(t *testing.T) {
	for n, want := range map[int]int{1: 64, 64: 64, 65: 128, 256: 256, 257: 512, 4096: 4096, 8192: 4096, 65536: 4096} {
		if got := BIERDomainBSL(n); got != want {
			t.Errorf("N=%d: BSL %d, want %d", n, got, want)
		}
	}
}
