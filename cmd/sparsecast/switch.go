package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"github.com/sparsecast/sparsecast/dataplane/dpdkport"
	"github.com/sparsecast/sparsecast/dataplane/metrics"
	"github.com/sparsecast/sparsecast/ffi"
)

func newSwitchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "switch",
		Short: "Run the sparsecast switch (dataplane)",
	}
	cmd.AddCommand(newSwitchRunCmd(nil), newSwitchFaultCmd(nil), newSwitchCheckCmd(nil))
	return cmd
}

// SwitchRunOptions are the flags of `switch run`.
type SwitchRunOptions struct {
	Log         io.Writer
	ConfigPath  string
	MetricsAddr string
	ControlRing string
}

func newSwitchRunCmd(runF func(*SwitchRunOptions) error) *cobra.Command {
	o := &SwitchRunOptions{Log: os.Stderr}
	cmd := &cobra.Command{
		Use:   "run --config switch.yaml",
		Short: "Forward SMH between the configured ports until interrupted",
		Long: `Opens the ports of the configuration, starts one polling worker per
configured core and forwards SMH packets by the configured route table.
SIGHUP re-reads the configuration's routes and groups and publishes them
without stopping the workers; SIGINT or SIGTERM stops the switch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.ConfigPath == "" {
				return errors.New("--config is required")
			}
			if runF != nil {
				return runF(o)
			}
			return switchRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.ConfigPath, "config", "", "switch configuration (YAML)")
	cmd.Flags().StringVar(&o.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics here (overrides metrics_addr)")
	cmd.Flags().StringVar(&o.ControlRing, "control-ring", "", "take tables from the control process through this ring file (overrides control_ring)")
	return cmd
}

// openPorts opens every configured port; on error it closes what it opened.
func openPorts(cfg *dataplane.Config) ([]dataplane.Port, error) {
	var ports []dataplane.Port
	for _, pc := range cfg.Ports {
		var (
			p   dataplane.Port
			err error
		)
		switch pc.Type {
		case "afpacket":
			p, err = afpacket.Open(pc.Iface, afpacket.Options{
				Name: pc.Name, RxRing: afpacket.RxRing(pc.RxRing), Tx: afpacket.TxMode(pc.Tx), QdiscBypass: pc.TxQdiscBypass,
				// A transmit ring slot holds the longest frame a buffer does.
				TxFrameMax: min(cfg.BufferSize-dataplane.Headroom, 65535),
			})
		case "dpdk":
			p, err = dpdkport.Open(dpdkport.FromConfig(cfg, &pc))
		default:
			err = fmt.Errorf("type %q ports exist only inside one process (tests and benchmarks)", pc.Type)
		}
		if err != nil {
			for _, q := range ports {
				q.Close()
			}
			return nil, fmt.Errorf("port %s: %w", pc.Name, err)
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func switchRun(ctx context.Context, o *SwitchRunOptions) error {
	cfg, err := dataplane.LoadConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	if o.MetricsAddr != "" {
		cfg.MetricsAddr = o.MetricsAddr
	}
	if o.ControlRing != "" {
		if err := dataplane.ValidateControlRing(o.ControlRing); err != nil {
			return fmt.Errorf("--control-ring: %w", err)
		}
		cfg.ControlRing = o.ControlRing
	}
	tables, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		return err
	}
	// The ring first: one the switch cannot trust (another user's, a
	// directory others can write) is refused before any port opens.
	var rf *ffi.RingFile
	if cfg.ControlRing != "" {
		if rf, err = ffi.OpenRingFile(cfg.ControlRing, 0); err != nil {
			return fmt.Errorf("control ring: %w", err)
		}
	}
	ports, err := openPorts(cfg)
	if err != nil {
		if rf != nil {
			rf.Close()
		}
		return err
	}
	defer func() {
		for _, p := range ports {
			p.Close()
		}
	}()
	sw, err := dataplane.NewSwitch(cfg, ports, tables)
	if err != nil {
		if rf != nil {
			rf.Close()
		}
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var reloads dataplane.ReloadCounters
	mopts := []metrics.Option{metrics.WithPortStats(metrics.PortStatsOf(ports)), metrics.WithDeviceStats(metrics.DeviceStatsOf(ports)),
		metrics.WithFaults(sw.FaultCounters()), metrics.WithReloads(&reloads)}
	controlAt := "off"
	if rf != nil {
		// The ring applier: control's batches become table snapshots, and
		// link events go back to control.
		ropts := dataplane.RingApplierOptions{BusyPoll: cfg.ControlPollMode == dataplane.PollBusy, Log: o.Log}
		if cfg.ControlCPU != nil {
			ropts.Pin, ropts.CPU = true, *cfg.ControlCPU
		}
		ra, err := dataplane.NewRingApplier(sw, rf, ropts)
		if err != nil {
			rf.Close()
			return fmt.Errorf("control ring: %w", err)
		}
		sw.OnLinkEvent(ra.OnLinkEvent)
		mopts = append(mopts, metrics.WithRing(ra.Counters()))
		applierDone := make(chan struct{})
		// The applier owns the file (it reopens it after a fault): close
		// it once Run has returned.
		defer func() { stop(); <-applierDone; ra.Close() }()
		go func() {
			defer close(applierDone)
			ra.Run(ctx)
		}()
		controlAt = fmt.Sprintf("%s (boot %016x)", cfg.ControlRing, ra.BootID())
	}
	// Link events go to the log as JSON lines (the failover benchmark and
	// operators read them), and to the control process when a ring is set.
	logEnc := json.NewEncoder(o.Log)
	var logMu sync.Mutex
	sw.OnLinkEvent(func(e dataplane.LinkEvent) {
		logMu.Lock()
		defer logMu.Unlock()
		_ = logEnc.Encode(struct {
			Event string `json:"event"`
			State string `json:"state_name"`
			dataplane.LinkEvent
		}{"link", dataplane.StateName(e.State), e})
	})
	// Runtime faults go to the log too, on the link events' clock.
	logFault := func(r metrics.FaultRequest) {
		logMu.Lock()
		defer logMu.Unlock()
		_ = logEnc.Encode(struct {
			Event string `json:"event"`
			metrics.FaultRequest
			AtNs int64 `json:"at_ns"`
		}{"fault", r, dataplane.MonotonicNs()})
	}
	metricsAt := "off"
	warnExposedAddr(o.Log, "metrics address", cfg.MetricsAddr)
	if cfg.MetricsAddr != "" {
		c := metrics.NewSwitchCollector(cfg.Name, sw.PortNames(), sw.Counters(), mopts...)
		// The metrics server also takes runtime faults (POST /fault,
		// loopback clients only; `sparsecast switch fault`).
		addr, err := metrics.ServeWith(ctx, cfg.MetricsAddr, map[string]http.Handler{metrics.FaultPath: metrics.FaultHandler(sw, logFault)}, c)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		metricsAt = "http://" + addr.String() + "/metrics"
	}
	go reloadOnHUP(ctx, o, sw, &reloads)
	go func() {
		if err := sw.WatchCarrier(ctx); err != nil {
			fmt.Fprintf(o.Log, "carrier watcher stopped: %v\n", err)
		}
	}()
	fmt.Fprintf(o.Log, "switch %s ready: %d ports, %d routes, %d workers (%s polling), metrics %s, control ring %s\n",
		cfg.Name, len(ports), tables.Routes.Len(), cfg.Workers, cfg.PollMode, metricsAt, controlAt)
	go superviseSystemd(ctx, o.Log, fmt.Sprintf("%d ports, %d workers, metrics %s", len(ports), cfg.Workers, metricsAt), workerPolls(sw))
	err = sw.Run(ctx)
	fmt.Fprintf(o.Log, "switch %s stopped\n", cfg.Name)
	return err
}

// reloadOnHUP publishes new routes and groups from the config file on
// SIGHUP. Port changes need a restart; a bad file keeps the old tables and
// is counted (sparsecast_switch_config_reloads_total{result="rejected"}).
func reloadOnHUP(ctx context.Context, o *SwitchRunOptions, sw *dataplane.Switch, rc *dataplane.ReloadCounters) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		reload(o, sw, rc)
	}
}

// reload is one reload: the config's tables published, or the error logged
// and the current tables kept; counted either way.
func reload(o *SwitchRunOptions, sw *dataplane.Switch, rc *dataplane.ReloadCounters) {
	cfg, err := dataplane.LoadConfig(o.ConfigPath)
	if err == nil && !slices.Equal(portNames(cfg), sw.PortNames()) {
		err = fmt.Errorf("ports changed from %v to %v: restart the switch for that", sw.PortNames(), portNames(cfg))
	}
	if err == nil {
		var t *dataplane.Tables
		if t, err = dataplane.TablesFromConfig(cfg); err == nil {
			// Through the writer mutex, like the ring applier and fast
			// reroute, and resolved against the links that are down.
			_ = sw.UpdateTables(func(old *dataplane.Tables) (*dataplane.Tables, error) {
				t.Generation = old.Generation + 1
				down := sw.DownPorts()
				t.Routes.Resolve(&down)
				return t, nil
			})
			rc.Applied.Add(1)
			fmt.Fprintf(o.Log, "reloaded: generation %d, %d routes, %d groups\n", t.Generation, t.Routes.Len(), t.Groups.Len())
			return
		}
	}
	rc.Rejected.Add(1)
	fmt.Fprintf(o.Log, "reload failed, keeping the current tables: %v\n", err)
}

func portNames(cfg *dataplane.Config) []string {
	names := make([]string, len(cfg.Ports))
	for i, p := range cfg.Ports {
		names[i] = p.Name
	}
	return names
}
