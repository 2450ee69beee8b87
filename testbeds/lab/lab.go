// Package lab builds network labs out of Linux network namespaces and veth
// pairs, runs sparsecast processes inside them, and tears them down again.
//
// Every namespace a Lab creates is named with the Lab's prefix ("sc-" by
// default), so Teardown can find and remove everything of a lab, also one
// left behind by a crashed run: it kills the processes inside each such
// namespace and deletes it, which deletes its veths too. Nothing is created
// in the root namespace, so a lab never touches the host's own network.
//
// A lab needs root, iproute2 and (for DisableTxOffload) ethtool, which it
// installs with apt-get when it is missing.
package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"golang.org/x/sys/unix"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultPrefix prefixes the names of a lab's namespaces.
const DefaultPrefix = "sc-"

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,15}$`)

// CheckPrefix rejects prefixes that could match namespaces a lab does not
// own (an empty one would match everything).
func CheckPrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("lab prefix %q: want a lowercase letter then up to 15 of [a-z0-9-]", p)
	}
	return nil
}

// Lab is a set of namespaces sharing a prefix, and the processes started in
// them. Its methods are safe for concurrent use.
type Lab struct {
	Prefix string
	// Log, if set, gets one line per command the lab runs.
	Log io.Writer
	// Detach starts processes in sessions of their own that outlive this
	// one (a testbed brought up by one command and used by the next).
	Detach bool

	mu    sync.Mutex
	procs []*Proc
}

// New checks that this process can build labs (root, iproute2) and returns
// an empty lab. It does not touch existing namespaces: call Teardown first to
// clear what a crashed run left.
func New(prefix string) (*Lab, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("lab: network namespaces need root (running as uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("lab: iproute2's ip command not found: %w", err)
	}
	return &Lab{Prefix: prefix}, nil
}

// NS is the full name of the lab's namespace called name.
func (l *Lab) NS(name string) string { return l.Prefix + name }

func (l *Lab) logf(format string, args ...any) {
	if l.Log != nil {
		fmt.Fprintf(l.Log, format+"\n", args...)
	}
}

// Run runs a command (in this namespace) to completion without logging
// it; its error includes the command's output.
func Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return run(ctx, nil, name, args...)
}

// run runs a command to completion; its error includes the command's output.
func run(ctx context.Context, log func(string, ...any), name string, args ...string) ([]byte, error) {
	if log != nil {
		log("+ %s %s", name, strings.Join(args, " "))
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// IP runs `ip ARGS...` in the root namespace (use `-n NS` to aim it).
func (l *Lab) IP(ctx context.Context, args ...string) error {
	_, err := run(ctx, l.logf, "ip", args...)
	return err
}

// Exec runs a command inside namespace ns (a full name, see NS) to
// completion and returns its standard output.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab: exec in %s: no command", ns)
	}
	return run(ctx, l.logf, "ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// AddNamespace creates namespace NS(name) with IPv6 disabled (no link-local
// addresses, router solicitations or MLD reports to confuse a switch) and
// the loopback up.
func (l *Lab) AddNamespace(ctx context.Context, name string) (string, error) {
	ns := l.NS(name)
	if err := l.IP(ctx, "netns", "add", ns); err != nil {
		return "", err
	}
	for _, kv := range [][2]string{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	} {
		if err := l.Sysctl(ctx, ns, kv[0], kv[1]); err != nil {
			return "", err
		}
	}
	if err := l.IP(ctx, "-n", ns, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return ns, nil
}

// EnableIPv6 turns IPv6 back on for one device of namespace ns.
func (l *Lab) EnableIPv6(ctx context.Context, ns, dev string) error {
	return l.Sysctl(ctx, ns, "net.ipv6.conf."+dev+".disable_ipv6", "0")
}

// Sysctl sets key to value inside namespace ns.
func (l *Lab) Sysctl(ctx context.Context, ns, key, value string) error {
	_, err := l.Exec(ctx, ns, "sysctl", "-q", "-w", key+"="+value)
	return err
}

// Link is one end of a veth pair.
type Link struct {
	NS  string // full namespace name
	Dev string
	MAC string // "" lets the kernel choose
}

// AddVeth creates a veth pair between two namespaces, both ends down.
func (l *Lab) AddVeth(ctx context.Context, a, b Link) error {
	args := []string{"-n", a.NS, "link", "add", a.Dev}
	if a.MAC != "" {
		args = append(args, "address", a.MAC)
	}
	args = append(args, "type", "veth", "peer", "name", b.Dev)
	if b.MAC != "" {
		args = append(args, "address", b.MAC)
	}
	args = append(args, "netns", b.NS)
	return l.IP(ctx, args...)
}

// AddAddr adds an address ("10.77.1.2/24", "fd77:1::2/64") to a device;
// IPv6 addresses skip duplicate address detection.
func (l *Lab) AddAddr(ctx context.Context, ns, dev, cidr string) error {
	args := []string{"-n", ns, "addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	return l.IP(ctx, args...)
}

// Up sets a device up.
func (l *Lab) Up(ctx context.Context, ns, dev string) error {
	return l.IP(ctx, "-n", ns, "link", "set", dev, "up")
}

// AddNeighbor installs a permanent neighbor entry, so the host reaches ip
// without ARP or neighbor discovery.
func (l *Lab) AddNeighbor(ctx context.Context, ns, dev, ip, mac string) error {
	return l.IP(ctx, "-n", ns, "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent")
}

// AddDefaultRoute routes everything of the address family of via through it.
func (l *Lab) AddDefaultRoute(ctx context.Context, ns, dev, via string) error {
	fam := "-4"
	if strings.Contains(via, ":") {
		fam = "-6"
	}
	return l.IP(ctx, "-n", ns, fam, "route", "replace", "default", "via", via, "dev", dev)
}

var ethtoolOnce struct {
	sync.Mutex
	path string
}

// ethtool finds ethtool, installing it with apt-get the first time it is
// missing.
func ethtool(ctx context.Context, log func(string, ...any)) (string, error) {
	ethtoolOnce.Lock()
	defer ethtoolOnce.Unlock()
	if ethtoolOnce.path != "" {
		return ethtoolOnce.path, nil
	}
	p, err := exec.LookPath("ethtool")
	if err != nil {
		if _, aerr := exec.LookPath("apt-get"); aerr != nil {
			return "", fmt.Errorf("lab: ethtool is missing and apt-get is not available to install it")
		}
		if _, ierr := run(ctx, log, "apt-get", "install", "-y", "-q", "ethtool"); ierr != nil {
			return "", fmt.Errorf("lab: ethtool is missing and installing it failed: %w", ierr)
		}
		if p, err = exec.LookPath("ethtool"); err != nil {
			return "", fmt.Errorf("lab: ethtool still missing after apt-get install: %w", err)
		}
	}
	ethtoolOnce.path = p
	return p, nil
}

// DisableTxOffload turns transmit checksum offload off on a device. On a
// veth the kernel otherwise leaves UDP checksums unfinished, and a switch
// reading the frames with AF_PACKET at the far end sees wrong checksums.
func (l *Lab) DisableTxOffload(ctx context.Context, ns, dev string) error {
	et, err := ethtool(ctx, l.logf)
	if err != nil {
		return err
	}
	_, err = l.Exec(ctx, ns, et, "-K", dev, "tx", "off")
	return err
}

// Proc is a process started in a namespace.
type Proc struct {
	NS   string
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts argv inside namespace ns (the caller's own namespace when ns
// is "") with the given output streams (nil discards). The lab stops it on
// Close if it is still running.
func (l *Lab) Start(ns, name string, stdout, stderr io.Writer, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab: start in %s: no command", ns)
	}
	l.logf("+ [%s] %s", ns, strings.Join(argv, " "))
	// `ip netns exec` enters the namespace and execs argv, so the process we
	// start is argv itself and its PID is the one to signal.
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	if ns == "" {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if l.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s in %s: %w", name, ns, err)
	}
	p := &Proc{NS: ns, Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// PID is the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit or ctx to end, and returns its exit
// error (nil for status 0).
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s in %s: %w", p.Name, p.NS, p.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s in %s: still running: %w", p.Name, p.NS, ctx.Err())
	}
}

// Stop sends SIGTERM, waits up to grace, then kills. It returns the exit
// error of a process that had already exited on its own, else nil.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		if p.err != nil {
			return fmt.Errorf("%s in %s: %w", p.Name, p.NS, p.err)
		}
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// Close stops the lab's processes and removes every namespace with its
// prefix. It is safe to call more than once.
// Release forgets the lab's processes without stopping them: they are
// detached and live on after this process (Detach).
func (l *Lab) Release() []*Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	procs := l.procs
	l.procs = nil
	return procs
}

func (l *Lab) Close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(2 * time.Second) }()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Teardown(ctx, l.Prefix, l.Log)
}

// Namespaces lists the namespaces whose names start with prefix.
func Namespaces(ctx context.Context, prefix string) ([]string, error) {
	out, err := run(ctx, nil, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "sc-h0 (id: 3)" or "sc-h0"
		f := strings.Fields(sc.Text())
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Teardown kills every process inside the namespaces named with prefix and
// deletes the namespaces (and so their veths). It works without the Lab that
// built them, after a crash, and is a no-op when there is nothing to remove.
func Teardown(ctx context.Context, prefix string, log io.Writer) error {
	if err := CheckPrefix(prefix); err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		if log != nil {
			fmt.Fprintf(log, format+"\n", args...)
		}
	}
	names, err := Namespaces(ctx, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		out, err := run(ctx, logf, "ip", "netns", "pids", ns)
		if err == nil {
			for _, f := range strings.Fields(string(out)) {
				pid, perr := strconv.Atoi(f)
				if perr != nil || pid <= 1 || pid == os.Getpid() {
					continue
				}
				logf("kill -9 %d (in %s)", pid, ns)
				if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
					errs = append(errs, fmt.Errorf("kill %d in %s: %w", pid, ns, kerr))
				}
			}
		}
		if _, err := run(ctx, logf, "ip", "netns", "del", ns); err != nil {
			// Deleted concurrently by another teardown: fine.
			if left, lerr := Namespaces(ctx, ns); lerr == nil && !contains(left, ns) {
				continue
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// SetLinkDown takes a network interface in a namespace administratively down
// (or up), as `ip link set dev DEV down` does, without starting a process, so
// that a benchmark can time the change to the microsecond. before runs just
// before the change, on the thread that makes it.
func SetLinkDown(ns, dev string, down bool, before func()) error {
	return afpacket.InNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("%s in %s: %w", dev, ns, err)
		}
		flags := ifr.Uint16()
		if down {
			flags &^= unix.IFF_UP
		} else {
			flags |= unix.IFF_UP
		}
		ifr.SetUint16(flags)
		if before != nil {
			before()
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("%s in %s: %w", dev, ns, err)
		}
		return nil
	})
}
