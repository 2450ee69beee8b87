package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/control"
)

// NewCmdControl builds `sparsecast control` with its `run` subcommand;
// runF replaces the run function in tests.
func NewCmdControl(runF func(*ControlRunOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control process that computes and pushes the switches' tables",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdControlRun(runF))
	return cmd
}

// ControlRunOptions are `control run`'s flags.
type ControlRunOptions struct {
	Log io.Writer

	Topology    string
	Switches    []string
	RingDir     string
	RingSlots   int
	API         string
	TokenFile   string
	MetricsAddr string
	StateDir    string
	// Store is "local" (the state dir) or etcd://HOST:PORT[,...].
	Store                      string
	EtcdPrefix                 string
	EtcdCA, EtcdCert, EtcdKey  string
	EtcdUser, EtcdPasswordFile string
}

// NewCmdControlRun builds `sparsecast control run`.
func NewCmdControlRun(runF func(*ControlRunOptions) error) *cobra.Command {
	o := &ControlRunOptions{}
	cmd := &cobra.Command{
		Use:   "run --topology fabric.yaml [--switch a,b,...] [flags]",
		Short: "Serve switches through their ring files until interrupted",
		Long: `Reads the fabric description, computes every served switch's routes
(primary and backup per receiver) and pushes them, with the groups, through
the switch's ring file <ring-dir>/sparsecast-<switch>.ring. A switch whose
dataplane starts or restarts gets a full resync; link failures it reports
make every served switch's routes be recomputed without the link. Groups
are managed through the API (sparsecast ctl). SIGINT or SIGTERM stops it.

The API listens on a Unix socket (mode 0600) or, with --token-file, on a
loopback TCP port with a bearer token.

The groups are kept in <state-dir>/control.db (bbolt), each change on disk
before the API answers, and read back at start before any switch is
resynced: a restarted control pushes every group. A store that cannot be
read is an error, never an empty start; a second control process on the
same state directory is refused.

With --store etcd://HOST:PORT[,HOST:PORT...] the groups and the link states
the switches report are kept in etcd under --etcd-prefix instead, shared by
every control process of the fabric (one per white box, each --switch its
own): a group changed through any of their APIs, or a link failure one
switch reports, reaches every control, which pushes it to its switches.
While etcd is unreachable the switches keep forwarding, group changes are
refused (HTTP 503), and each control catches up from its last revision when
etcd is back.`,
		Example: `  sparsecast control run --topology testbeds/leafspine.yaml
  sparsecast control run --topology fabric.yaml --switch leaf1 --api 127.0.0.1:7470 --token-file /etc/sparsecast/token
  sparsecast control run --topology fabric.yaml --state-dir /var/lib/sparsecast/control-fabric1
  sparsecast control run --topology fabric.yaml --switch leaf1 --store etcd://10.0.0.1:2379,10.0.0.2:2379 --etcd-ca ca.pem --etcd-cert leaf1.pem --etcd-key leaf1-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Log = cmd.ErrOrStderr()
			if o.Topology == "" {
				return errors.New("--topology is required")
			}
			for _, s := range o.Switches {
				if strings.TrimSpace(s) == "" {
					return errors.New("--switch: empty switch name")
				}
			}
			network, _, err := control.ParseAPIAddr(o.API)
			if err != nil {
				return err
			}
			if network == "tcp" && o.TokenFile == "" {
				return fmt.Errorf("--api %s is TCP: it needs --token-file", o.API)
			}
			if o.RingSlots < 16 || o.RingSlots > 1<<20 || o.RingSlots&(o.RingSlots-1) != 0 {
				return fmt.Errorf("--ring-slots %d: want a power of two from 16 to %d", o.RingSlots, 1<<20)
			}
			if err := checkStoreFlags(o); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return controlRun(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Topology, "topology", "", "fabric description (YAML, required)")
	f.StringSliceVar(&o.Switches, "switch", nil, "switches to serve, comma-separated (default: all of the topology)")
	f.StringVar(&o.RingDir, "ring-dir", control.DefaultRingDir, "directory of the ring files")
	f.IntVar(&o.RingSlots, "ring-slots", control.DefaultRingSlots, "records per ring of a ring file control creates")
	f.StringVar(&o.API, "api", control.DefaultAPI, "API address: unix:/path or a loopback HOST:PORT (needs --token-file)")
	f.StringVar(&o.TokenFile, "token-file", "", "file holding the API's bearer token (at least 16 characters)")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address")
	f.StringVar(&o.StateDir, "state-dir", control.DefaultStateDir, "directory of the state file (control.db: the groups)")
	f.StringVar(&o.Store, "store", "local", "where the state is: local (--state-dir) or etcd://HOST:PORT[,HOST:PORT...]")
	f.StringVar(&o.EtcdPrefix, "etcd-prefix", control.DefaultEtcdPrefix, "key prefix of the fabric's state in etcd")
	f.StringVar(&o.EtcdCA, "etcd-ca", "", "CA certificate to check etcd's servers with (TLS)")
	f.StringVar(&o.EtcdCert, "etcd-cert", "", "client certificate for etcd (TLS, with --etcd-key)")
	f.StringVar(&o.EtcdKey, "etcd-key", "", "client key for etcd (TLS, with --etcd-cert)")
	f.StringVar(&o.EtcdUser, "etcd-user", "", "etcd user name (with --etcd-password-file)")
	f.StringVar(&o.EtcdPasswordFile, "etcd-password-file", "", "file holding the etcd user's password")
	return cmd
}

func controlRun(ctx context.Context, o *ControlRunOptions) error {
	topo, err := control.LoadTopology(o.Topology)
	if err != nil {
		return err
	}
	token := ""
	if o.TokenFile != "" {
		if token, err = control.ReadToken(o.TokenFile); err != nil {
			return err
		}
		warnTokenFileMode(o.Log, o.TokenFile)
	}
	warnExposedAddr(o.Log, "--metrics-addr", o.MetricsAddr)
	store, err := openControlStore(o)
	if err != nil {
		return err
	}
	defer store.Close()
	srv, err := control.NewServer(topo, control.ServerOptions{
		Switches: o.Switches, RingDir: o.RingDir, RingSlots: o.RingSlots, Log: o.Log, Store: store,
	})
	if err != nil {
		return err
	}
	ln, err := control.ListenAPI(o.API, token)
	if err != nil {
		return fmt.Errorf("API: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	metricsAt := "off"
	if o.MetricsAddr != "" {
		addr, err := control.ServeMetrics(ctx, o.MetricsAddr, srv.Collector())
		if err != nil {
			ln.Close()
			return err
		}
		metricsAt = "http://" + addr.String() + "/metrics"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	apiDone := make(chan error, 1)
	go func() {
		err := srv.ServeAPI(ctx, ln, token)
		if err != nil {
			err = fmt.Errorf("API: %w", err)
		}
		apiDone <- err
		cancel() // the API failing stops the process
	}()
	served := o.Switches
	if len(served) == 0 {
		served = topo.SwitchNames()
	}
	fmt.Fprintf(o.Log, "control ready: %d switches (%s), %d receivers, %d groups from %s, rings in %s, API %s, metrics %s\n",
		len(served), strings.Join(served, ","), len(topo.Receivers()), srv.Status().Groups, store.Describe(), o.RingDir, o.API, metricsAt)
	go superviseSystemd(ctx, o.Log, fmt.Sprintf("serving %d switches, API %s", len(served), o.API), func() []uint64 { return []uint64{srv.Rounds()} })
	runErr := srv.Run(ctx)
	cancel()
	apiErr := <-apiDone
	fmt.Fprintln(o.Log, "control stopped")
	return errors.Join(runErr, apiErr)
}
