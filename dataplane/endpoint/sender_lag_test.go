package endpoint

import (
	"context"
	"testing"
	"time"
)

func TestNoteLag(t *testing.T) {
	var st SendStats
	ms := time.Millisecond
	for seq, lag := range []time.Duration{0, 3 * ms, 5 * ms, ms, 0, 4 * ms, LagThreshold} {
		st.noteLag(uint32(100+seq), lag)
	}
	// Late packets up to lagJoin apart are one run.
	st.noteLag(105+lagJoin+1, 4*ms)
	want := []LagEpisode{{101, 105, int64(5 * ms)}, {105 + lagJoin + 1, 105 + lagJoin + 1, int64(4 * ms)}}
	if st.LatePackets != 4 || st.MaxLagNs != int64(5*ms) || len(st.Lag) != 2 || st.Lag[0] != want[0] || st.Lag[1] != want[1] {
		t.Errorf("late %d, max %d, episodes %+v; want 4, %d, %+v", st.LatePackets, st.MaxLagNs, st.Lag, int64(5*ms), want)
	}
	// Episodes past the bound are counted, not kept.
	for i := 0; i < 2*maxLagEpisodes; i++ {
		st.noteLag(uint32(1000+(lagJoin+1)*i), 3*ms)
	}
	if len(st.Lag) != maxLagEpisodes || st.LagOmitted != maxLagEpisodes+2 {
		t.Errorf("%d episodes kept, %d omitted; want %d, %d", len(st.Lag), st.LagOmitted, maxLagEpisodes, maxLagEpisodes+2)
	}
}

// A sender descheduled mid-run (here: its receiver function blocks for
// 60 ms at packet 20) reports the packets after the stall as late, and the
// schedule it gave up beyond maxLag.
func TestSenderReportsItsLag(t *testing.T) {
	_, s := pair(t, "127.0.0.1", ReceiverConfig{ID: 1}, SenderConfig{Rate: 1000, Receivers: func(seq uint32) []uint16 {
		if seq == 20 {
			time.Sleep(60 * time.Millisecond)
		}
		return []uint16{1}
	}})
	st, err := s.Run(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	// Other stalls on a loaded machine may add episodes: look for the one
	// this test caused.
	var ep *LagEpisode
	for i := range st.Lag {
		if e := &st.Lag[i]; e.FirstSeq <= 21 && 21 <= e.LastSeq {
			ep = e
		}
	}
	if ep == nil || ep.MaxLagNs < int64(55*time.Millisecond) || st.MaxLagNs < ep.MaxLagNs {
		t.Fatalf("lag %+v, max %v: want an episode through seq 21 of about 60 ms", st.Lag, time.Duration(st.MaxLagNs))
	}
	// After the stall the debt beyond maxLag is forgiven: at least the
	// stall less maxLag (and the one interval it owed) was skipped.
	if skipped := time.Duration(st.SkippedNs); skipped < 35*time.Millisecond {
		t.Errorf("skipped %v of the schedule after a 60 ms stall, want at least 35 ms", skipped)
	}
	// An episode may span packets on time between late ones (lagJoin),
	// never more late packets than it spans.
	if st.LatePackets == 0 || len(st.Lag) == 1 && st.LatePackets > uint64(ep.LastSeq-ep.FirstSeq+1) {
		t.Errorf("%d late packets, episode %+v", st.LatePackets, *ep)
	}
}
