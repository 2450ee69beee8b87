package lab

// Concurrent checkpoint copies: on a running fabric, several senders copy
// a file each (different contents) to receiver sets that overlap, all at
// once, each with a session of its own. Every receiving host runs one
// `recv --out` for all the files sent to it. The run passes when every
// receiver holds every file sent to it byte-exact, and each copy's own
// accounting agrees: the sender's summary names exactly its receivers, all
// complete, and each receiver's report has that sender's stream with
// exactly the packets the sender addressed to it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CopySpec is one copy of a concurrent run.
type CopySpec struct {
	Sender    string
	Receivers []string
	// Size is the file's size (default 4 MiB).
	Size int
}

// CopiesOptions configure CopiesOn.
type CopiesOptions struct {
	Copies []CopySpec
	// MaxRate caps each sender (packets per second; 0: congestion control).
	MaxRate float64
	Timeout time.Duration // default 2 minutes
	Log     func(format string, args ...any)
}

// CopyResult is one copy's outcome and accounting.
type CopyResult struct {
	Sender   string `json:"sender"`
	SourceID uint16 `json:"source_id"`
	Session  uint16 `json:"session"`
	File     string `json:"file"`
	Size     int    `json:"size"`
	OK       bool   `json:"ok"`
	// Summary is the sender's `send --json` summary.
	Summary   json.RawMessage    `json:"sender_summary"`
	Receivers []TransferReceiver `json:"receivers"`
	Errors    []string           `json:"errors,omitempty"`
}

// CopiesResult is the run's outcome.
type CopiesResult struct {
	DeliveredOK bool         `json:"delivered_ok"`
	Copies      []CopyResult `json:"copies"`
	ElapsedS    float64      `json:"elapsed_s"`
}

// Table renders a result for people.
func (r *CopiesResult) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d concurrent copies: delivered_ok %v in %.1f s\n", len(r.Copies), r.DeliveredOK, r.ElapsedS)
	for _, c := range r.Copies {
		fmt.Fprintf(&b, "  %s (source %d, session %d) %s, %d bytes: ok %v %s\n", c.Sender, c.SourceID, c.Session, c.File, c.Size, c.OK, strings.Join(c.Errors, "; "))
		for _, rc := range c.Receivers {
			fmt.Fprintf(&b, "    %-4s id %-5d ok %-5v %d bytes, %d ACKs, %d NACKs %s\n", rc.Host, rc.ID, rc.OK, rc.Bytes, rc.ACKs, rc.NACKs, rc.Error)
		}
	}
	return b.String()
}

// CopiesOn runs every copy at once on a running fabric.
func CopiesOn(ctx context.Context, f *Fabric, o CopiesOptions) (*CopiesResult, error) {
	start := time.Now()
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if len(o.Copies) == 0 {
		return nil, fmt.Errorf("copies: none given")
	}
	// One fresh session per copy, reserved on the fabric (see session.go).
	sessions, err := reserveSessions(f.Dir, len(o.Copies), 0)
	if err != nil {
		return nil, err
	}
	defer sessions.Release()
	res := &CopiesResult{}
	// Files per receiving host, and the copies' files.
	files := map[string]int{}
	var order []string
	data := make([][]byte, len(o.Copies))
	senders := map[string]bool{}
	for i := range o.Copies {
		c := &o.Copies[i]
		if c.Size == 0 {
			c.Size = 4 << 20
		}
		sh := f.Hosts[c.Sender]
		if sh == nil || !sh.Receiver || senders[c.Sender] {
			return nil, fmt.Errorf("copies: sender %q: want a host with an ID that sends one copy", c.Sender)
		}
		senders[c.Sender] = true
		if len(c.Receivers) == 0 {
			return nil, fmt.Errorf("copies: %s sends to nobody", c.Sender)
		}
		for _, r := range c.Receivers {
			if h := f.Hosts[r]; h == nil || !h.Receiver {
				return nil, fmt.Errorf("copies: %q is not a receiving host", r)
			}
			if files[r] == 0 {
				order = append(order, r)
			}
			files[r]++
		}
		name := "ckpt-" + c.Sender + ".bin"
		// A seed per copy: copies differ, so a mixed-up stream shows.
		if data[i], err = writeCheckpoint(filepath.Join(f.Dir, name), c.Size, uint64(1000+i)); err != nil {
			return nil, err
		}
		res.Copies = append(res.Copies, CopyResult{Sender: c.Sender, SourceID: sh.ID, Session: sessions.IDs[i], File: name, Size: c.Size})
	}
	for r := range files {
		if senders[r] {
			return nil, fmt.Errorf("copies: %s both sends and receives (one SMH port per host)", r)
		}
	}
	wait := o.Timeout + 30*time.Second
	outs := map[string]*bytes.Buffer{}
	procs := map[string]*Proc{}
	for _, r := range order {
		dir := filepath.Join(f.Dir, "out-"+r)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		outs[r] = &bytes.Buffer{}
		p, err := startFileReceiver(ctx, f, f.bin, f.Hosts[r], dir, files[r], wait, outs[r])
		if err != nil {
			return nil, fmt.Errorf("copies: %w", err)
		}
		procs[r] = p
	}
	type sendProc struct {
		out *bytes.Buffer
		p   *Proc
		log string
	}
	sends := make([]sendProc, len(o.Copies))
	for i, c := range o.Copies {
		var ids []string
		for _, r := range c.Receivers {
			ids = append(ids, strconv.Itoa(int(f.Hosts[r].ID)))
		}
		cr := &res.Copies[i]
		logf("== %s copies %s (%d bytes, session %d) to %s", c.Sender, cr.File, c.Size, cr.Session, strings.Join(c.Receivers, ","))
		args := []string{f.bin, "send", "--via", f.GatewayAddr(c.Sender), "--listen", f.ListenAddr(c.Sender),
			"--to", strings.Join(ids, ","), "--source-id", strconv.Itoa(int(cr.SourceID)), "--session", strconv.Itoa(int(cr.Session)),
			"--give-up", "20s", "--json"}
		if o.MaxRate > 0 {
			args = append(args, "--max-rate", strconv.FormatFloat(o.MaxRate, 'f', -1, 64))
		}
		args = append(args, filepath.Join(f.Dir, cr.File))
		logPath := filepath.Join(f.Dir, "send-"+c.Sender+".log")
		lf, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		out := &bytes.Buffer{}
		p, err := f.Lab.Start(f.Hosts[c.Sender].NS, "send "+c.Sender, out, lf, args...)
		lf.Close()
		if err != nil {
			return nil, err
		}
		sends[i] = sendProc{out, p, logPath}
	}
	wctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	defer cancel()
	for i, s := range sends {
		cr := &res.Copies[i]
		if err := s.p.Wait(wctx); err != nil {
			cr.Errors = append(cr.Errors, fmt.Sprintf("sender: %v (see %s)", err, s.log))
		}
		cr.Summary = json.RawMessage(bytes.TrimSpace(s.out.Bytes()))
		if !json.Valid(cr.Summary) {
			cr.Summary = nil
		}
	}
	type recvReport struct {
		Files  []struct{ Source, Session uint16 } `json:"files"`
		Report struct {
			Streams []struct {
				Source    uint16 `json:"source"`
				Session   uint16 `json:"session"`
				Delivered uint64 `json:"delivered"`
				ACKs      uint64 `json:"acks_sent"`
				NACKs     uint64 `json:"nacks_sent"`
			} `json:"streams"`
		} `json:"report"`
	}
	reports := map[string]*recvReport{}
	recvErr := map[string]string{}
	for _, r := range order {
		if err := procs[r].Wait(wctx); err != nil {
			recvErr[r] = fmt.Sprintf("recv: %v", err)
		}
		_ = os.WriteFile(filepath.Join(f.Dir, "recv-"+r+".json"), outs[r].Bytes(), 0o644)
		rep := &recvReport{}
		if err := json.Unmarshal(outs[r].Bytes(), rep); err != nil {
			recvErr[r] = strings.TrimSpace(recvErr[r] + " no report: " + err.Error())
		}
		reports[r] = rep
	}
	res.DeliveredOK = true
	for i, c := range o.Copies {
		cr := &res.Copies[i]
		var sum struct {
			SourceID  int  `json:"source_id"`
			Session   int  `json:"session"`
			Complete  bool `json:"complete"`
			Receivers []struct {
				ID       uint16 `json:"id"`
				Complete bool   `json:"complete"`
				Packets  uint64 `json:"packets"`
			} `json:"receivers"`
		}
		packets := map[uint16]uint64{}
		if err := json.Unmarshal(cr.Summary, &sum); err != nil {
			cr.Errors = append(cr.Errors, "no sender summary")
		} else {
			var ids []uint16
			for _, rc := range sum.Receivers {
				ids = append(ids, rc.ID)
				packets[rc.ID] = rc.Packets
				if !rc.Complete {
					cr.Errors = append(cr.Errors, fmt.Sprintf("sender: receiver %d not complete", rc.ID))
				}
			}
			var want []uint16
			for _, r := range c.Receivers {
				want = append(want, f.Hosts[r].ID)
			}
			slices.Sort(ids)
			slices.Sort(want)
			switch {
			case !sum.Complete:
				cr.Errors = append(cr.Errors, "sender: not complete")
			case sum.SourceID != int(cr.SourceID) || sum.Session != int(cr.Session):
				cr.Errors = append(cr.Errors, fmt.Sprintf("sender: summary of source %d session %d", sum.SourceID, sum.Session))
			case !slices.Equal(ids, want):
				cr.Errors = append(cr.Errors, fmt.Sprintf("sender: accounts for receivers %v, want %v", ids, want))
			}
		}
		for _, r := range c.Receivers {
			h := f.Hosts[r]
			rr := TransferReceiver{Host: r, ID: h.ID, Error: recvErr[r]}
			// This copy's stream in the receiver's report, by (source,
			// session): exactly the packets the sender addressed to it.
			found := false
			for _, st := range reports[r].Report.Streams {
				if st.Source != cr.SourceID || st.Session != cr.Session {
					continue
				}
				found = true
				rr.ACKs, rr.NACKs = st.ACKs, st.NACKs
				if p, ok := packets[h.ID]; ok && st.Delivered != p {
					rr.Error = strings.TrimSpace(fmt.Sprintf("%s delivered %d packets of the stream, the sender addressed %d", rr.Error, st.Delivered, p))
				}
			}
			if !found {
				rr.Error = strings.TrimSpace(rr.Error + " no stream of this copy in its report")
			}
			got, err := os.ReadFile(filepath.Join(f.Dir, "out-"+r, cr.File))
			rr.Bytes = int64(len(got))
			switch {
			case err != nil:
				rr.Error = strings.TrimSpace(rr.Error + " " + err.Error())
			case !bytes.Equal(got, data[i]):
				rr.Error = strings.TrimSpace(rr.Error + " contents differ from the original")
			}
			rr.OK = rr.Error == ""
			if !rr.OK {
				cr.Errors = append(cr.Errors, r+": "+rr.Error)
			}
			cr.Receivers = append(cr.Receivers, rr)
		}
		cr.OK = len(cr.Errors) == 0
		if !cr.OK {
			res.DeliveredOK = false
		}
	}
	// No receiver got a file nobody sent it.
	for _, r := range order {
		if n := len(reports[r].Files); n != files[r] {
			res.DeliveredOK = false
			logf("copies: %s reports %d files, was sent %d", r, n, files[r])
		}
	}
	if !res.DeliveredOK {
		f.DumpMetrics(wctx)
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res, nil
}
