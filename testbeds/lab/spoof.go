package lab

// Forged feedback for the transfer scenario's spoofing check: a host that
// is not downstream of a stream sends ACKs claiming to come from its
// receivers (their own ACKs, and switch-style aggregates naming all of
// them). The switch must drop every one (feedback_spoofed) and the copy
// must stay byte-exact: had one reached the source, it would have freed
// packets a lossy receiver still lacked.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// forgedACKs builds the datagrams (SMH only: they go out as UDP payloads)
// for stream (source, session): for each X in xs, every receiver's own
// ACK(X) and one aggregate ACK(X) naming all of them.
func forgedACKs(source, session uint16, ids []uint16, xs []uint32) [][]byte {
	var out [][]byte
	for _, x := range xs {
		f := headers.Fields{Type: headers.TypeACK, HopLimit: headers.DefaultHopLimit, SourceID: source, SessionID: session, Sequence: x, SpeaksFor: 1}
		for _, id := range ids {
			f.ReporterID = id
			b := make([]byte, headers.HeaderLenFor(headers.TypeACK, nil))
			out = append(out, b[:headers.PutHeader(b, f, nil)])
		}
		f.Flags, f.SpeaksFor, f.ReporterID = headers.FlagAggregated, uint16(len(ids)), 0xFEFE
		b := make([]byte, headers.HeaderLenFor(headers.TypeACK, ids))
		out = append(out, b[:headers.PutHeader(b, f, ids)])
	}
	return out
}

// spoofer sends forged ACKs from a host's namespace to its gateway, round
// after round, until stop is closed.
type spoofer struct {
	f    *Fabric
	host string
	dir  string
	sent int
}

// writeFiles stores the datagrams as files for the host's shell to send
// (bash's /dev/udp: one datagram per file, from a fresh source port).
func (s *spoofer) writeFiles(dgrams [][]byte) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	for i, d := range dgrams {
		if err := os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("%05d.smh", i)), d, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// round sends every forged datagram once.
func (s *spoofer) round(ctx context.Context, n int) error {
	gw := s.f.Hosts[s.host].GatewayIP
	script := fmt.Sprintf(`for f in %s/*.smh; do cat "$f" > /dev/udp/%s/%d; done`, s.dir, gw, s.f.UDPPort)
	if _, err := s.f.Lab.Exec(ctx, s.f.Hosts[s.host].NS, "bash", "-c", script); err != nil {
		return fmt.Errorf("spoofer %s: %w", s.host, err)
	}
	s.sent += n
	return nil
}

// run sends rounds every interval until done is closed.
func (s *spoofer) run(ctx context.Context, n int, interval time.Duration, done <-chan struct{}) error {
	for {
		if err := s.round(ctx, n); err != nil {
			return err
		}
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// SwitchDrops reads a switch's drop counter for one reason from its
// metrics endpoint (inside its namespace).
func (f *Fabric) SwitchDrops(ctx context.Context, sw, reason string) (uint64, error) {
	return f.SwitchCounter(ctx, sw, `sparsecast_switch_drops_total{reason="`+reason+`"}`)
}

// SwitchCounter reads one series of a switch's metrics, named as the
// exposition prints it (labels in order): `name{label="value",...}`.
func (f *Fabric) SwitchCounter(ctx context.Context, sw, series string) (uint64, error) {
	ns, ok := f.SwitchNS[sw]
	if !ok {
		return 0, fmt.Errorf("no switch %q", sw)
	}
	out, err := f.Lab.Exec(ctx, ns, "curl", "-sf", "http://127.0.0.1:9470/metrics")
	if err != nil {
		return 0, fmt.Errorf("%s metrics: %w", sw, err)
	}
	want := series + " "
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return uint64(n), err
		}
	}
	return 0, fmt.Errorf("%s metrics: no %s", sw, series)
}

// DumpMetrics writes every switch's metrics to metrics-SWITCH.txt in the
// fabric's directory, for a post-mortem of a failed run (best effort).
func (f *Fabric) DumpMetrics(ctx context.Context) {
	for sw, ns := range f.SwitchNS {
		if out, err := f.Lab.Exec(ctx, ns, "curl", "-sf", "http://127.0.0.1:9470/metrics"); err == nil {
			_ = os.WriteFile(filepath.Join(f.Dir, "metrics-"+sw+".txt"), out, 0o644)
		}
	}
}

// hostSwitch names the switch a host attaches to.
func (f *Fabric) hostSwitch(host string) string {
	for _, h := range f.Topo.Hosts {
		if h.Name == host {
			return f.Topo.Switches[h.Switch].Name
		}
	}
	return ""
}
