package lab

// A fabric run as white boxes are: one control process per switch, each
// with its own API, sharing the fabric's state through an etcd (Debian's
// etcd-server) on loopback with a data directory in the fabric's
// directory. In: a Fabric whose switches run. Out: the etcd process, one
// control per switch (API Dir/control-SWITCH.sock, log
// Dir/control-SWITCH.log), each having resynced its switch.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

// EtcdBinary is the etcd server the per-switch labs run.
const EtcdBinary = "etcd"

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartEtcd (re)starts the fabric's etcd and waits until it answers. The
// first start picks its loopback ports; a restart keeps them and the data.
func (f *Fabric) StartEtcd(ctx context.Context) error {
	bin, err := exec.LookPath(EtcdBinary)
	if err != nil {
		return fmt.Errorf("fabric: --store etcd needs Debian's etcd-server (testbeds/setup-debian.sh installs it): %w", err)
	}
	if f.EtcdEndpoint == "" {
		cp, err := freeLoopbackPort()
		if err != nil {
			return err
		}
		pp, err := freeLoopbackPort()
		if err != nil {
			return err
		}
		f.EtcdEndpoint = "127.0.0.1:" + strconv.Itoa(cp)
		f.etcdPeer = "http://127.0.0.1:" + strconv.Itoa(pp)
	}
	lf, err := os.OpenFile(filepath.Join(f.Dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	p, err := f.Lab.Start("", "etcd", lf, lf, bin, "--name", "lab", "--data-dir", filepath.Join(f.Dir, "etcd-data"),
		"--listen-client-urls", "http://"+f.EtcdEndpoint, "--advertise-client-urls", "http://"+f.EtcdEndpoint,
		"--listen-peer-urls", f.etcdPeer, "--initial-advertise-peer-urls", f.etcdPeer, "--initial-cluster", "lab="+f.etcdPeer)
	if err != nil {
		return err
	}
	f.etcd = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", f.EtcdEndpoint, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("fabric: etcd did not come up on %s (see %s)", f.EtcdEndpoint, filepath.Join(f.Dir, "etcd.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopEtcd stops the fabric's etcd (SIGTERM), keeping its data.
func (f *Fabric) StopEtcd() error {
	if f.etcd == nil {
		return fmt.Errorf("fabric: no etcd")
	}
	p := f.etcd
	f.etcd = nil
	return p.Stop(5 * time.Second)
}

// EtcdPID is the etcd process's ID (0: none).
func (f *Fabric) EtcdPID() int {
	if f.etcd == nil {
		return 0
	}
	return f.etcd.PID()
}

// etcdPrefix keeps two labs on one etcd apart.
func (f *Fabric) etcdPrefix() string { return "/sparsecast/" + f.Lab.Prefix + "/" }

// StartSwitchControl (re)starts the control process of one switch, on the
// fabric's etcd, and waits until its switch has applied a table from it.
func (f *Fabric) StartSwitchControl(ctx context.Context, sw string) error {
	api := filepath.Join(f.Dir, "control-"+sw+".sock")
	logPath := filepath.Join(f.Dir, "control-"+sw+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	p, err := f.Lab.Start("", "control "+sw, lf, lf, f.bin, "control", "run", "--topology", f.TopologyPath,
		"--switch", sw, "--ring-dir", f.Dir, "--api", "unix:"+api,
		"--store", "etcd://"+f.EtcdEndpoint, "--etcd-prefix", f.etcdPrefix())
	if err != nil {
		return err
	}
	f.Controls[sw], f.ControlAPIs[sw], f.ControlLogs[sw] = p, api, logPath
	c, err := control.NewClient("unix:"+api, "")
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := c.Status(ctx)
		if err == nil && len(st.Switches) == 1 && st.Switches[0].InSync {
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("fabric: control of %s did not resync it (see %s)", sw, logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startPerSwitchControls starts etcd and one control per switch.
func (f *Fabric) startPerSwitchControls(ctx context.Context, logf func(string, ...any)) error {
	f.Controls, f.ControlAPIs, f.ControlLogs = map[string]*Proc{}, map[string]string{}, map[string]string{}
	logf("== starting etcd")
	if err := f.StartEtcd(ctx); err != nil {
		return err
	}
	logf("== starting a control process per switch on etcd %s", f.EtcdEndpoint)
	for _, sw := range f.Topo.Switches {
		if err := f.StartSwitchControl(ctx, sw.Name); err != nil {
			return err
		}
	}
	return nil
}

// alivePID reports whether a process is running.
func alivePID(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }
