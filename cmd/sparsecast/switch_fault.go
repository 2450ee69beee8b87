package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/metrics"
)

// SwitchFaultOptions are the flags of `switch fault`.
type SwitchFaultOptions struct {
	Out         io.Writer
	MetricsAddr string
	Port        string
	Loss        float64
	Burst       int
	For         time.Duration
	JSON        bool
}

func newSwitchFaultCmd(runF func(*SwitchFaultOptions) error) *cobra.Command {
	o := &SwitchFaultOptions{}
	cmd := &cobra.Command{
		Use:   "fault --port NAME [--loss 1] --for DURATION [--metrics-addr 127.0.0.1:9470]",
		Short: "Make a running switch's port drop frames for a while, carrier up (a silent failure)",
		Long: `Sets a runtime fault on one port of a running switch: for --for, the
port's egress drops frames with probability --loss (1, the default: every
frame, a link that fails silently, its carrier up), each loss event taking
--burst frames, instead of its configured fault injector; then it returns
to the configured one. --loss 0 ends a fault at once. Dropped frames count
as sparsecast_switch_drops_total{reason="fault_injected"}, requests as
sparsecast_switch_fault_requests_total{result}.

The request goes to the switch's metrics server (POST /fault), which
answers loopback clients only: run it on the switch's host (in a lab, in
its namespace: ip netns exec NS sparsecast switch fault ...). It prints the
faults in force.`,
		Example: `  sparsecast switch fault --port p1 --for 300ms
  sparsecast switch fault --metrics-addr 127.0.0.1:9470 --port p2 --loss 0.05 --burst 3 --for 10s
  sparsecast switch fault --port p1 --loss 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			if err := o.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return switchFault(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.MetricsAddr, "metrics-addr", "127.0.0.1:9470", "the switch's metrics server, a loopback HOST:PORT")
	f.StringVar(&o.Port, "port", "", "port name, as in the switch's configuration (required)")
	f.Float64Var(&o.Loss, "loss", 1, "probability that a loss event starts at a frame, 0-1 (1: drop everything; 0: end the fault)")
	f.IntVar(&o.Burst, "burst", 1, "frames one loss event drops, 1-65536")
	f.DurationVar(&o.For, "for", 0, "how long the fault lasts (required unless --loss 0)")
	f.BoolVar(&o.JSON, "json", false, "print the faults in force as JSON")
	return cmd
}

func (o *SwitchFaultOptions) check() error {
	host, _, err := net.SplitHostPort(o.MetricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %q: want HOST:PORT: %w", o.MetricsAddr, err)
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Errorf("--metrics-addr %q: the switch takes faults from loopback only; run this on its host", o.MetricsAddr)
	}
	switch {
	case o.Port == "":
		return fmt.Errorf("--port is required")
	case o.Loss < 0 || o.Loss > 1:
		return fmt.Errorf("--loss %v: want 0-1", o.Loss)
	case o.Burst < 1 || o.Burst > 1<<16:
		return fmt.Errorf("--burst %d: want 1-65536", o.Burst)
	case o.Loss > 0 && (o.For <= 0 || o.For > dataplane.MaxFaultDuration):
		return fmt.Errorf("--for %v: want above 0, at most %v", o.For, dataplane.MaxFaultDuration)
	case o.Loss == 0 && o.For != 0:
		return fmt.Errorf("--for applies to a fault; --loss 0 ends one")
	}
	return nil
}

func switchFault(o *SwitchFaultOptions) error {
	req := metrics.FaultRequest{Port: o.Port, Loss: o.Loss, Burst: o.Burst}
	if o.For > 0 {
		req.For = o.For.String()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+o.MetricsAddr+metrics.FaultPath, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fault: %w (is the switch running with metrics on %s?)", err, o.MetricsAddr)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("fault: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("switch refused the fault (%s): %s", resp.Status, strings.TrimSpace(string(out)))
	}
	var faults []metrics.FaultInForce
	if err := json.Unmarshal(out, &faults); err != nil {
		return fmt.Errorf("fault: answer %q: %w", out, err)
	}
	if o.JSON {
		_, err := o.Out.Write(out)
		return err
	}
	if len(faults) == 0 {
		fmt.Fprintln(o.Out, "no faults in force")
	}
	for _, f := range faults {
		fmt.Fprintf(o.Out, "port %s: loss %v, burst %d, for %s more\n", f.Port, f.Loss, f.Burst, f.Remaining)
	}
	return nil
}
