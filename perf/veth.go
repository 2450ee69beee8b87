//go:build linux

// `sparsecast bench veth`: the switch against the kernel's own replicators
// on one veth topology, in one run. In order:
//
//  1. Remove what an earlier run left (namespaces named with the prefix),
//     then build three namespaces: gen (g0), dut (in, o1..oN) and sink
//     (r1..rN), with veth pairs g0-in and oi-ri. Every copy leaves dut as
//     IPv4 to the group 239.1.1.1 with its multicast MAC, whoever made it,
//     so sink's IP stack drops each the same way (no member, no multicast
//     routing) after the veth has counted it.
//  2. For each replicator in turn, set it up, start the generator, warm up,
//     read the counters, wait, read them again, stop the generator and take
//     the replicator down:
//     - switch: `sparsecast switch run` in dut, AF_PACKET ports on in and
//     o1..oN, one busy-polling worker pinned to the replicator CPU (dut's IP
//     stack drops its own copy of each frame: no multicast routing yet);
//     - tc: a u32 match-all filter on in's ingress with mirred actions: a
//     mirror to o1..oN-1 and a redirect to oN (the last copy is the frame
//     itself; it also needs no drop action, which some kernels, this lab
//     machine's among them, are built without);
//     - smcroute: kernel multicast routing, smcrouted in dut with an (S,G)
//     route from in to o1..oN. On a kernel without multicast routing
//     (no CONFIG_IP_MROUTE: no /proc/net/ip_mr_vif) it is skipped, and if
//     smcroute cannot be installed or run, the reason goes into the result;
//     the other two still count either way.
//  3. The generator, in this process, sends one prebuilt frame as fast as
//     it can from g0 with sendmmsg, on the generator CPU: IPv4 UDP to
//     239.1.1.1 carrying SMH DATA for receivers 1..N, the same bytes for all
//     three replicators (the switch reads SMH, the kernel the IP multicast).
//  4. Counting: rx_packets of r1..rN (a veth counts a frame when it hands it
//     to its peer), read over rtnetlink in sink; per-CPU busy time from
//     /proc/stat over the same window; the switch process from
//     /proc/PID/stat.
//  5. Always: stop the processes and delete the namespaces.
//
// On veth the kernel replicates in softirq on the CPU that receives the
// frame on in, which is the generator's unless steered. By default in's
// receive queue is steered (RPS) to the replicator CPU while tc and
// smcroute run, so each replicator has the core the switch's worker has and
// the generator keeps the other.
package perf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// The targets of issue 6: per-output rate against tc and against smcroute.
const (
	VethTargetVsTC       = 1.2
	VethTargetVsSmcroute = 2.0
)

// Replicator names, as they appear in results.
const (
	ReplicatorSwitch   = "switch"
	ReplicatorTC       = "tc"
	ReplicatorSmcroute = "smcroute"
)

// DefaultVethPrefix names the namespaces of `bench veth`; it is not the labs'
// "sc-", so the bench never removes a lab someone runs by hand.
const DefaultVethPrefix = "scveth-"

// Addressing of the bench frame and the topology.
const (
	vethGroup   = "239.1.1.1"
	vethSource  = "10.99.0.2"
	vethInAddr  = "10.99.0.1/24"
	vethMaxOuts = 30 // tc: 32 actions per filter, less the drop; smcroute: 32 VIFs, less in
	vethMaxSize = 1514
	genBatch    = 64
)

// VethOptions configure BenchVeth. Zero values take the defaults.
type VethOptions struct {
	// Binary is the sparsecast binary that runs the switch (required).
	Binary string
	// Outputs is the number of egress veths (default 8).
	Outputs int
	// Seconds is each replicator's measured window (default 5).
	Seconds float64
	// Size is the frame size in bytes, Ethernet header included (default 256).
	Size int
	// Warmup runs before each window (default 1s).
	Warmup time.Duration
	// KernelOnGeneratorCPU leaves tc and smcroute replicating on the
	// generator's CPU (no RPS on in).
	KernelOnGeneratorCPU bool
	// SkipSmcroute measures the switch and tc only.
	SkipSmcroute bool
	// RxRing is the switch ports' receive ring, "v2" or "v3" (default: the
	// switch's default, v3).
	RxRing string
	// Tx is the switch ports' transmit mode, "ring", "ring-zerocopy" or
	// "sendmmsg" (default: the switch's default, ring).
	Tx string
	// Prefix names the namespaces (default DefaultVethPrefix).
	Prefix string
	// Dir receives switch.yaml, tc batch files and logs (default: a new
	// temporary directory, kept so a failure can be read).
	Dir string
	// Log gets progress lines and the commands run (nil: silent).
	Log io.Writer
}

// VethRun is one replicator's measurement.
type VethRun struct {
	Replicator string  `json:"replicator"`
	Seconds    float64 `json:"seconds"`
	// OfferedPPS is what the generator handed to the kernel on g0 per
	// second; IngressPPS what in received (the rest was dropped on the
	// way, e.g. a full receive backlog).
	OfferedPPS float64 `json:"offered_pps"`
	IngressPPS float64 `json:"ingress_pps"`
	// PPSPerOutput is the mean over the outputs of the frames each output's
	// peer counted per second; Min and Max bound it.
	PPSPerOutput    float64  `json:"pps_per_output"`
	MinPPSPerOutput float64  `json:"min_pps_per_output"`
	MaxPPSPerOutput float64  `json:"max_pps_per_output"`
	EgressPPS       float64  `json:"egress_pps"`
	OutputPackets   []uint64 `json:"output_packets"`
	// IngressDropped is frames g0 could not hand to in (in's receive
	// backlog full), EgressDropped copies o1..oN could not hand to their
	// peers, both in the window: where a saturated kernel path sheds load.
	IngressDropped uint64 `json:"ingress_dropped"`
	EgressDropped  uint64 `json:"egress_dropped"`
	// CPUBusyPct is every CPU's busy time in the window (percent of that
	// CPU), CPUSoftirqPct the softirq part of it.
	CPUBusyPct    []float64 `json:"cpu_busy_pct"`
	CPUSoftirqPct []float64 `json:"cpu_softirq_pct"`
	// ProcessCPUPct is the switch process's CPU time (switch only), in
	// percent of one CPU, and its user and system parts.
	ProcessCPUPct    float64 `json:"process_cpu_pct,omitempty"`
	ProcessUserPct   float64 `json:"process_user_pct,omitempty"`
	ProcessSystemPct float64 `json:"process_system_pct,omitempty"`
	// RPSCPU is the CPU in's receive queue was steered to (-1: none).
	RPSCPU int `json:"rps_cpu"`
	// ReplicatorCPUPct is the CPU the replicator itself used, in percent
	// of one CPU: the switch process's time (the softirq work its sends
	// trigger included: the kernel charges it to the process), or the
	// kernel's softirq time on the CPU it replicated on. Other processes
	// on a shared machine do not count, so EgressPerCPUSecond, copies
	// delivered per second of replicator CPU, compares replicators also
	// when they got different shares of a busy core. (The switch's receive
	// ring is filled in the generator's softirq, on the other CPU, which
	// this leaves out; without RPS the kernel's figure includes the
	// generator's own softirq work.)
	ReplicatorCPUPct   float64 `json:"replicator_cpu_pct"`
	EgressPerCPUSecond float64 `json:"egress_per_cpu_second"`
	// Setup lists the commands that made the replicator.
	Setup []string `json:"setup"`
}

// VethResult is what `sparsecast bench veth --json` prints.
type VethResult struct {
	Outputs      int     `json:"outputs"`
	FrameSize    int     `json:"frame_size"`
	Seconds      float64 `json:"seconds"`
	OfferedLoad  string  `json:"offered_load"`
	CPUs         int     `json:"cpus"`
	GeneratorCPU int     `json:"generator_cpu"`
	// ReplicatorCPU is the switch worker's CPU and the kernel's RPS CPU
	// (-1: nothing pinned, one CPU only).
	ReplicatorCPU int     `json:"replicator_cpu"`
	LoadAvgBefore float64 `json:"loadavg_1m_before"`
	// RxRing is the switch ports' receive ring as configured ("": the
	// switch's default).
	RxRing string `json:"rx_ring,omitempty"`
	// Tx is the switch ports' transmit mode as configured ("": the
	// switch's default).
	Tx string `json:"tx,omitempty"`

	SwitchPPSPerOutput   float64 `json:"switch_pps_per_output"`
	TCPPSPerOutput       float64 `json:"tc_pps_per_output"`
	SmcroutePPSPerOutput float64 `json:"smcroute_pps_per_output"`
	RatioVsTC            float64 `json:"ratio_vs_tc"`
	RatioVsSmcroute      float64 `json:"ratio_vs_smcroute"`
	TargetVsTC           float64 `json:"target_vs_tc"`
	TargetVsSmcroute     float64 `json:"target_vs_smcroute"`
	MeetsTargets         bool    `json:"meets_targets"`
	// The same ratios per second of replicator CPU (VethRun.EgressPerCPUSecond).
	CPURatioVsTC       float64 `json:"cpu_ratio_vs_tc"`
	CPURatioVsSmcroute float64 `json:"cpu_ratio_vs_smcroute"`

	Switch        *VethRun `json:"switch"`
	TC            *VethRun `json:"tc"`
	Smcroute      *VethRun `json:"smcroute,omitempty"`
	SmcrouteError string   `json:"smcroute_error,omitempty"`
	Dir           string   `json:"dir"`
}

// Runs lists the replicators measured, in order.
func (r *VethResult) Runs() []*VethRun {
	var runs []*VethRun
	for _, v := range []*VethRun{r.Switch, r.TC, r.Smcroute} {
		if v != nil {
			runs = append(runs, v)
		}
	}
	return runs
}

func (o *VethOptions) defaults() error {
	if o.Outputs == 0 {
		o.Outputs = 8
	}
	if o.Seconds == 0 {
		o.Seconds = 5
	}
	if o.Size == 0 {
		o.Size = 256
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
	if o.Prefix == "" {
		o.Prefix = DefaultVethPrefix
	}
	minSize := vethMinSize(o.Outputs)
	switch {
	case o.RxRing != "" && o.RxRing != "v2" && o.RxRing != "v3":
		return fmt.Errorf("bench veth: rx ring %q: want v2 or v3", o.RxRing)
	case o.Tx != "" && o.Tx != "ring" && o.Tx != "ring-zerocopy" && o.Tx != "sendmmsg":
		return fmt.Errorf("bench veth: tx %q: want ring, ring-zerocopy or sendmmsg", o.Tx)
	case o.Binary == "":
		return errors.New("bench veth: no sparsecast binary")
	case o.Outputs < 1 || o.Outputs > vethMaxOuts:
		return fmt.Errorf("bench veth: outputs %d: want 1-%d", o.Outputs, vethMaxOuts)
	case o.Seconds < 0 || o.Seconds > 3600:
		return fmt.Errorf("bench veth: seconds %v: want more than 0 and at most 3600", o.Seconds)
	case o.Size < minSize || o.Size > vethMaxSize:
		return fmt.Errorf("bench veth: size %d: want %d-%d bytes for %d outputs", o.Size, minSize, vethMaxSize, o.Outputs)
	case o.Warmup < 0:
		return errors.New("bench veth: negative warm-up")
	}
	if fi, err := os.Stat(o.Binary); err != nil {
		return fmt.Errorf("bench veth: binary: %w", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("bench veth: binary %s is not an executable file", o.Binary)
	}
	return lab.CheckPrefix(o.Prefix)
}

// vethReceivers are the receiver IDs of the bench frame: one per output.
func vethReceivers(outputs int) []uint16 {
	ids := make([]uint16, outputs)
	for i := range ids {
		ids[i] = uint16(i + 1)
	}
	return ids
}

// vethMinSize is the smallest frame: Ethernet, IPv4, UDP, SMH, 8 bytes of
// payload, and never under Ethernet's 60.
func vethMinSize(outputs int) int {
	return max(60, 14+20+8+headers.HeaderLenFor(headers.TypeData, vethReceivers(outputs))+8)
}

// VethFrame is the bench frame: IPv4 UDP from 10.99.0.2 to the group
// 239.1.1.1 (multicast MAC), SMH DATA for receivers 1..outputs, padded to size.
func VethFrame(outputs, size int) ([]byte, error) {
	if size < vethMinSize(outputs) || size > vethMaxSize {
		return nil, fmt.Errorf("size %d: want %d-%d bytes for %d outputs", size, vethMinSize(outputs), vethMaxSize, outputs)
	}
	ids := vethReceivers(outputs)
	hdr := 14 + 20 + 8 + headers.HeaderLenFor(headers.TypeData, ids)
	return dataplane.BuildFrame(dataplane.FrameSpec{
		SrcMAC:    net.HardwareAddr{0x02, 0x53, 0x56, 0x00, 0x00, 0x02},
		DstMAC:    vethGroupMAC,
		SrcIP:     net.ParseIP(vethSource),
		DstIP:     net.ParseIP(vethGroup),
		SrcPort:   50000,
		Fields:    headers.Fields{Type: headers.TypeData, HopLimit: headers.DefaultHopLimit, SourceID: 1, SessionID: 1},
		Receivers: ids,
		Payload:   make([]byte, size-hdr),
	})
}

// vethGroupMAC is the Ethernet address of 239.1.1.1.
var vethGroupMAC = net.HardwareAddr{0x01, 0x00, 0x5e, 0x01, 0x01, 0x01}

// outMAC and sinkMAC are output i's address in dut and its peer's in sink.
func outMAC(i int) string  { return fmt.Sprintf("02:53:56:01:%02x:01", i) }
func sinkMAC(i int) string { return fmt.Sprintf("02:53:56:01:%02x:02", i) }

// VethSwitchConfig renders the switch.yaml of the bench: port in, ports
// o1..oN routing receiver i to oi, one worker busy-polling cpu (adaptive
// and unpinned when cpu < 0), every port on the rx ring rxRing and the
// transmit mode tx ("": the switch's defaults). The neighbor of every output is the group, so the
// switch's copies reach the sink as the kernel's do.
func VethSwitchConfig(outputs, cpu int, rxRing, tx string) []byte {
	var b bytes.Buffer
	b.WriteString("# bench veth, written by sparsecast bench veth\n")
	fmt.Fprintf(&b, "name: veth-bench\nudp_port: %d\nworkers: 1\nmetrics_addr: 127.0.0.1:0\n", headers.DefaultUDPPort)
	if cpu >= 0 {
		fmt.Fprintf(&b, "poll_mode: busy\ncpus: [%d]\n", cpu)
	} else {
		b.WriteString("poll_mode: adaptive\n")
	}
	ring := ""
	if rxRing != "" {
		ring = "    rx_ring: " + rxRing + "\n"
	}
	if tx != "" {
		ring += "    tx: " + tx + "\n"
	}
	b.WriteString("ports:\n  - name: in\n    type: afpacket\n    iface: in\n" + ring)
	for i := 1; i <= outputs; i++ {
		fmt.Fprintf(&b, "  - name: o%d\n    type: afpacket\n    iface: o%d\n    neighbor_mac: %q\n    neighbor_ip: %q\n%s",
			i, i, vethGroupMAC.String(), vethGroup, ring)
	}
	b.WriteString("routes:\n")
	for i := 1; i <= outputs; i++ {
		fmt.Fprintf(&b, "  - receivers: %q\n    port: o%d\n", strconv.Itoa(i), i)
	}
	return b.Bytes()
}

// vethTopology is the built lab.
type vethTopology struct {
	l                *lab.Lab
	gen, dut, sink   string
	outputs          int
	genCPU, repCPU   int
	rxRing, tx       string
	dir              string
	logf             func(string, ...any)
	frame            []byte
	warmup, duration time.Duration
	g                *generator // the running generator, during measure
}

// BenchVeth builds the topology, measures the switch, tc and smcroute one
// after another, and always removes the namespaces it made. A failure of the
// switch or tc run is an error; smcroute's goes into SmcrouteError.
func BenchVeth(ctx context.Context, o VethOptions) (res *VethResult, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench veth builds network namespaces: run it as root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("bench veth: %s (iproute2) not found: %w", tool, err)
		}
	}
	frame, err := VethFrame(o.Outputs, o.Size)
	if err != nil {
		return nil, err
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "sparsecast-bench-veth-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	genCPU, repCPU, ncpu, err := pickCPUs()
	if err != nil {
		return nil, err
	}
	res = &VethResult{
		Outputs: o.Outputs, FrameSize: o.Size, Seconds: o.Seconds,
		OfferedLoad: "saturating: one generator thread sends as fast as sendmmsg goes, the same for every replicator",
		CPUs:        ncpu, GeneratorCPU: genCPU, ReplicatorCPU: repCPU,
		LoadAvgBefore: vethLoadAvg(), Dir: o.Dir, RxRing: o.RxRing, Tx: o.Tx,
		TargetVsTC: VethTargetVsTC, TargetVsSmcroute: VethTargetVsSmcroute,
	}

	if err := lab.Teardown(ctx, o.Prefix, o.Log); err != nil {
		return nil, fmt.Errorf("bench veth: clearing an earlier run: %w", err)
	}
	l, err := lab.New(o.Prefix)
	if err != nil {
		return nil, err
	}
	l.Log = o.Log
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench veth: teardown: %w", cerr)
		}
	}()
	t := &vethTopology{
		l: l, outputs: o.Outputs, genCPU: genCPU, repCPU: repCPU, rxRing: o.RxRing, tx: o.Tx, dir: o.Dir, logf: logf, frame: frame,
		warmup: o.Warmup, duration: time.Duration(o.Seconds * float64(time.Second)),
	}
	logf("== building the topology: %sgen, %sdut, %ssink with %d outputs", o.Prefix, o.Prefix, o.Prefix, o.Outputs)
	if err := t.build(ctx); err != nil {
		return nil, fmt.Errorf("bench veth: building the topology: %w", err)
	}

	kernelCPU := repCPU
	if o.KernelOnGeneratorCPU {
		kernelCPU = -1
	}
	logf("== switch")
	if res.Switch, err = t.runSwitch(ctx, o.Binary); err != nil {
		return nil, fmt.Errorf("bench veth: switch: %w", err)
	}
	logf("== tc")
	if res.TC, err = t.runTC(ctx, kernelCPU); err != nil {
		return nil, fmt.Errorf("bench veth: tc: %w", err)
	}
	if o.SkipSmcroute {
		res.SmcrouteError = "skipped"
	} else if err := kernelMroute(mrouteProc); err != nil {
		// Without CONFIG_IP_MROUTE smcrouted cannot start at all (MRT_INIT
		// fails); say so rather than wait for it.
		res.SmcrouteError = err.Error()
		logf("smcroute: %v", err)
	} else {
		logf("== smcroute")
		run, serr := t.runSmcroute(ctx, kernelCPU)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if serr != nil {
			res.SmcrouteError = serr.Error()
			logf("smcroute: %v", serr)
		}
		res.Smcroute = run
	}

	res.SwitchPPSPerOutput = res.Switch.PPSPerOutput
	res.TCPPSPerOutput = res.TC.PPSPerOutput
	res.RatioVsTC = vethRatio(res.SwitchPPSPerOutput, res.TCPPSPerOutput)
	if res.Smcroute != nil {
		res.SmcroutePPSPerOutput = res.Smcroute.PPSPerOutput
		res.RatioVsSmcroute = vethRatio(res.SwitchPPSPerOutput, res.SmcroutePPSPerOutput)
	}
	res.MeetsTargets = res.Smcroute != nil && res.RatioVsTC >= VethTargetVsTC && res.RatioVsSmcroute >= VethTargetVsSmcroute
	res.CPURatioVsTC = vethRatio(res.Switch.EgressPerCPUSecond, res.TC.EgressPerCPUSecond)
	if res.Smcroute != nil {
		res.CPURatioVsSmcroute = vethRatio(res.Switch.EgressPerCPUSecond, res.Smcroute.EgressPerCPUSecond)
	}
	return res, nil
}

func vethRatio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// pickCPUs puts the generator on the first CPU this process may use and
// replicators on the last; with one CPU nothing is pinned (-1).
func pickCPUs() (gen, rep, n int, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, 0, 0, fmt.Errorf("bench veth: CPU affinity: %w", err)
	}
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return -1, -1, len(cpus), nil
	}
	return cpus[0], cpus[len(cpus)-1], len(cpus), nil
}

func vethLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// build makes the namespaces and veths (step 1).
func (t *vethTopology) build(ctx context.Context) error {
	l := t.l
	var err error
	if t.gen, err = l.AddNamespace(ctx, "gen"); err != nil {
		return err
	}
	if t.dut, err = l.AddNamespace(ctx, "dut"); err != nil {
		return err
	}
	if t.sink, err = l.AddNamespace(ctx, "sink"); err != nil {
		return err
	}
	if err := l.AddVeth(ctx, lab.Link{NS: t.gen, Dev: "g0", MAC: "02:53:56:00:00:02"}, lab.Link{NS: t.dut, Dev: "in", MAC: "02:53:56:00:00:01"}); err != nil {
		return err
	}
	for i := 1; i <= t.outputs; i++ {
		if err := l.AddVeth(ctx, lab.Link{NS: t.dut, Dev: fmt.Sprintf("o%d", i), MAC: outMAC(i)},
			lab.Link{NS: t.sink, Dev: fmt.Sprintf("r%d", i), MAC: sinkMAC(i)}); err != nil {
			return err
		}
	}
	// Addresses in dut: kernel multicast routing wants IPv4 on its VIFs.
	if err := l.AddAddr(ctx, t.dut, "in", vethInAddr); err != nil {
		return err
	}
	for i := 1; i <= t.outputs; i++ {
		if err := l.AddAddr(ctx, t.dut, fmt.Sprintf("o%d", i), fmt.Sprintf("10.99.%d.1/24", i)); err != nil {
			return err
		}
	}
	ups := [][2]string{{t.gen, "g0"}, {t.dut, "in"}}
	for i := 1; i <= t.outputs; i++ {
		ups = append(ups, [2]string{t.dut, fmt.Sprintf("o%d", i)}, [2]string{t.sink, fmt.Sprintf("r%d", i)})
	}
	for _, u := range ups {
		if err := l.Up(ctx, u[0], u[1]); err != nil {
			return err
		}
	}
	return nil
}

// tcBatch runs tc -batch over the commands in namespace ns.
func (t *vethTopology) tcBatch(ctx context.Context, ns, name, cmds string) error {
	path := filepath.Join(t.dir, "tc-"+name+".batch")
	if err := os.WriteFile(path, []byte(cmds), 0o644); err != nil {
		return err
	}
	if _, err := t.l.Exec(ctx, ns, "tc", "-batch", path); err != nil {
		return fmt.Errorf("%w (commands in %s)", err, path)
	}
	return nil
}

// setRPS steers in's receive processing to cpu (-1: off).
func (t *vethTopology) setRPS(ctx context.Context, cpu int) error {
	mask := "0"
	if cpu >= 0 {
		mask = cpuMask(cpu)
	}
	_, err := t.l.Exec(ctx, t.dut, "sh", "-c", "echo "+mask+" > /sys/class/net/in/queues/rx-0/rps_cpus")
	return err
}

// cpuMask is the sysfs CPU mask of one CPU: hex, in comma-separated groups
// of 32 bits, most significant first.
func cpuMask(cpu int) string {
	groups := make([]string, cpu/32+1)
	for i := range groups {
		groups[i] = "00000000"
	}
	groups[len(groups)-1-cpu/32] = fmt.Sprintf("%08x", uint32(1)<<(cpu%32))
	return strings.Join(groups, ",")
}

// runSwitch measures the switch (step 2, switch).
func (t *vethTopology) runSwitch(ctx context.Context, binary string) (*VethRun, error) {
	cfgPath := filepath.Join(t.dir, "switch.yaml")
	if err := os.WriteFile(cfgPath, VethSwitchConfig(t.outputs, t.repCPU, t.rxRing, t.tx), 0o644); err != nil {
		return nil, err
	}
	if _, err := dataplane.LoadConfig(cfgPath); err != nil {
		return nil, fmt.Errorf("generated config does not load: %w", err)
	}
	logPath := filepath.Join(t.dir, "switch.log")
	swLog, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer swLog.Close()
	proc, err := t.l.Start(t.dut, "switch", swLog, swLog, binary, "switch", "run", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	defer proc.Stop(3 * time.Second)
	if err := lab.WaitPacketSockets(ctx, t.dut, t.outputs+1, proc, 15*time.Second); err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, logPath)
	}
	run := &VethRun{Replicator: ReplicatorSwitch, RPSCPU: -1, Setup: []string{binary + " switch run --config " + cfgPath}}
	err = t.measure(ctx, run, proc.PID(), func() error {
		if proc.Exited() {
			return fmt.Errorf("the switch exited: %v (see %s)", proc.Wait(ctx), logPath)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := proc.Stop(3 * time.Second); err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, logPath)
	}
	return run, nil
}

// runTC measures the tc mirror chain (step 2, tc).
func (t *vethTopology) runTC(ctx context.Context, rpsCPU int) (*VethRun, error) {
	var filter strings.Builder
	filter.WriteString("filter add dev in parent ffff: protocol all prio 1 u32 match u32 0 0")
	for i := 1; i < t.outputs; i++ {
		fmt.Fprintf(&filter, " action mirred egress mirror dev o%d pipe", i)
	}
	fmt.Fprintf(&filter, " action mirred egress redirect dev o%d", t.outputs)
	cmds := "qdisc add dev in ingress\n" + filter.String() + "\n"
	if err := t.tcBatch(ctx, t.dut, "tc-mirror", cmds); err != nil {
		return nil, err
	}
	defer t.l.Exec(context.WithoutCancel(ctx), t.dut, "tc", "qdisc", "del", "dev", "in", "ingress")
	run := &VethRun{Replicator: ReplicatorTC, RPSCPU: rpsCPU, Setup: []string{"tc qdisc add dev in ingress", "tc " + filter.String()}}
	if err := t.kernelRun(ctx, run, rpsCPU); err != nil {
		return nil, err
	}
	return run, nil
}

// kernelRun steers in to rpsCPU and measures.
func (t *vethTopology) kernelRun(ctx context.Context, run *VethRun, rpsCPU int) error {
	if rpsCPU >= 0 {
		if err := t.setRPS(ctx, rpsCPU); err != nil {
			return fmt.Errorf("RPS: %w", err)
		}
		defer t.setRPS(context.WithoutCancel(ctx), -1)
		run.Setup = append(run.Setup, "echo "+cpuMask(rpsCPU)+" > /sys/class/net/in/queues/rx-0/rps_cpus")
	}
	return t.measure(ctx, run, 0, nil)
}

// runSmcroute measures kernel multicast routing (step 2, smcroute). The
// returned run is nil when nothing was measured.
func (t *vethTopology) runSmcroute(ctx context.Context, rpsCPU int) (*VethRun, error) {
	daemon, ctl, err := findSmcroute(ctx, t.logf)
	if err != nil {
		return nil, err
	}
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv4.conf.all.forwarding", "1"}} {
		if err := t.l.Sysctl(ctx, t.dut, kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	ident := strings.TrimSuffix(t.l.Prefix, "-") + "-bench"
	conf := filepath.Join(t.dir, "smcroute.conf")
	sock := filepath.Join(t.dir, "smcroute.sock")
	pidf := filepath.Join(t.dir, "smcroute.pid")
	if err := os.WriteFile(conf, []byte("# bench veth: the route is added with smcroutectl\n"), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(t.dir, "smcrouted.log")
	dlog, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer dlog.Close()
	proc, err := t.l.Start(t.dut, "smcrouted", dlog, dlog, daemon, "-n", "-i", ident, "-f", conf, "-u", sock, "-P", pidf, "-l", "info")
	if err != nil {
		return nil, err
	}
	defer proc.Stop(3 * time.Second)
	ctlArgs := []string{ctl, "-i", ident, "-u", sock}
	// The daemon is ready when it answers on its socket and the kernel has
	// multicast forwarding on.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, serr := lab.Run(ctx, "ip", append([]string{"netns", "exec", t.dut}, append(slices.Clone(ctlArgs), "show", "interfaces")...)...)
		fwd, ferr := lab.Run(ctx, "ip", "netns", "exec", t.dut, "cat", "/proc/sys/net/ipv4/conf/all/mc_forwarding")
		if serr == nil && ferr == nil && strings.TrimSpace(string(fwd)) == "1" {
			break
		}
		if proc.Exited() {
			return nil, fmt.Errorf("smcrouted exited: %v (see %s)", proc.Wait(ctx), logPath)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("smcrouted not ready in 10 s (socket: %v, mc_forwarding %q: %v; see %s)", serr, strings.TrimSpace(string(fwd)), ferr, logPath)
		}
		if err := sleepOrDone(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	add := append(slices.Clone(ctlArgs), "add", "in", vethSource, vethGroup)
	for i := 1; i <= t.outputs; i++ {
		add = append(add, fmt.Sprintf("o%d", i))
	}
	if _, err := t.l.Exec(ctx, t.dut, add...); err != nil {
		return nil, err
	}
	// The kernel's forwarding cache must hold the route with every output.
	cache, err := lab.Run(ctx, "ip", "netns", "exec", t.dut, "cat", "/proc/net/ip_mr_cache")
	if err != nil {
		return nil, err
	}
	if oifs := mrCacheOIFs(string(cache), vethGroup, vethSource); oifs != t.outputs {
		return nil, fmt.Errorf("kernel multicast route (%s, %s) has %d outputs, want %d:\n%s", vethSource, vethGroup, oifs, t.outputs, cache)
	}
	run := &VethRun{Replicator: ReplicatorSmcroute, RPSCPU: rpsCPU, Setup: []string{
		"sysctl -w net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding=1",
		strings.Join([]string{daemon, "-n", "-i", ident, "-f", conf, "-u", sock, "-P", pidf}, " "),
		strings.Join(add, " "),
	}}
	if err := t.kernelRun(ctx, run, rpsCPU); err != nil {
		return nil, err
	}
	if proc.Exited() {
		return nil, fmt.Errorf("smcrouted exited during the run: %v (see %s)", proc.Wait(ctx), logPath)
	}
	return run, nil
}

// mrouteProc exists when the kernel has IPv4 multicast routing: the kernel
// creates it (and ip_mr_cache) only when built with CONFIG_IP_MROUTE.
const mrouteProc = "/proc/net/ip_mr_vif"

// ErrNoMroute is the reason smcroute is not measured on a kernel without
// multicast routing.
var ErrNoMroute = errors.New("kernel has no multicast routing (CONFIG_IP_MROUTE); smcroute skipped")

// kernelMroute reports ErrNoMroute when path (mrouteProc) is missing. The
// check has no side effect, unlike MRT_INIT, which would take the
// namespace's multicast routing socket from whoever holds it.
func kernelMroute(path string) error {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist):
		return ErrNoMroute
	}
	return fmt.Errorf("checking for kernel multicast routing: %w", err)
}

// mrCacheOIFs finds the (source, group) entry of /proc/net/ip_mr_cache and
// counts its output interfaces (-1: no entry). Addresses there are hex in
// network byte order as read by a little-endian host, e.g. 0101A8C0.
func mrCacheOIFs(cache, group, source string) int {
	hexOf := func(s string) string {
		ip := net.ParseIP(s).To4()
		if ip == nil {
			return ""
		}
		return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(ip))
	}
	g, s := hexOf(group), hexOf(source)
	sc := bufio.NewScanner(strings.NewReader(cache))
	for sc.Scan() {
		// Group Origin Iif Pkts Bytes Wrong Oifs...
		f := strings.Fields(sc.Text())
		if len(f) >= 6 && strings.EqualFold(f[0], g) && strings.EqualFold(f[1], s) {
			return len(f) - 6
		}
	}
	return -1
}

var smcrouteInstall struct {
	sync.Mutex
	tried bool
	err   error
}

// findSmcroute finds smcrouted and smcroutectl, installing Debian's smcroute
// package with apt-get the first time they are missing.
func findSmcroute(ctx context.Context, logf func(string, ...any)) (daemon, ctl string, err error) {
	look := func() (string, string, error) {
		d, err := exec.LookPath("smcrouted")
		if err != nil {
			return "", "", err
		}
		c, err := exec.LookPath("smcroutectl")
		return d, c, err
	}
	smcrouteInstall.Lock()
	defer smcrouteInstall.Unlock()
	if d, c, err := look(); err == nil {
		return d, c, nil
	}
	if smcrouteInstall.tried {
		return "", "", smcrouteInstall.err
	}
	smcrouteInstall.tried = true
	smcrouteInstall.err = func() error {
		if _, err := exec.LookPath("apt-get"); err != nil {
			return errors.New("smcroute is not installed and apt-get is not available to install it")
		}
		logf("+ apt-get install -y -q smcroute")
		if _, err := lab.Run(ctx, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "smcroute"); err != nil {
			logf("+ apt-get update -q")
			if _, uerr := lab.Run(ctx, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update", "-q"); uerr != nil {
				return fmt.Errorf("smcroute is not installed; apt-get install failed (%v) and so did apt-get update: %w", err, uerr)
			}
			if _, err := lab.Run(ctx, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "smcroute"); err != nil {
				return fmt.Errorf("smcroute is not installed and apt-get install smcroute failed: %w", err)
			}
		}
		return nil
	}()
	if smcrouteInstall.err != nil {
		return "", "", smcrouteInstall.err
	}
	d, c, err := look()
	if err != nil {
		smcrouteInstall.err = fmt.Errorf("smcroute still missing after apt-get install: %w", err)
		return "", "", smcrouteInstall.err
	}
	return d, c, nil
}

func sleepOrDone(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// measure runs the generator through the warm-up and the window and fills
// run's rates and CPU figures (steps 3 and 4). pid > 0 is a process whose
// CPU time is measured; alive, if set, is checked before and after the
// window.
func (t *vethTopology) measure(ctx context.Context, run *VethRun, pid int, alive func() error) error {
	g, err := openGenerator(t.gen, "g0", t.frame)
	if err != nil {
		return err
	}
	defer g.close()
	// This process's other threads (the Go runtime's included) stay off the
	// replicator's CPU while it is measured.
	if t.genCPU >= 0 {
		restore, err := confineThreads(t.genCPU)
		if err != nil {
			return err
		}
		defer restore()
	}
	t.g = g
	defer func() { t.g = nil }()
	g.start(t.genCPU)
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		return g.stop()
	}
	defer stop()
	if err := sleepOrDone(ctx, t.warmup); err != nil {
		return err
	}
	if alive != nil {
		if err := alive(); err != nil {
			return err
		}
	}
	a, err := t.snapshot(pid)
	if err != nil {
		return err
	}
	if err := sleepOrDone(ctx, t.duration); err != nil {
		return err
	}
	b, err := t.snapshot(pid)
	if err != nil {
		return err
	}
	if err := stop(); err != nil {
		return err
	}
	if alive != nil {
		if err := alive(); err != nil {
			return err
		}
	}
	fillRun(run, a, b, t.outputs, pid > 0)
	switch {
	case pid > 0:
		run.ReplicatorCPUPct = run.ProcessCPUPct
	case run.RPSCPU >= 0 && run.RPSCPU < len(run.CPUSoftirqPct):
		run.ReplicatorCPUPct = run.CPUSoftirqPct[run.RPSCPU]
	case t.genCPU >= 0 && t.genCPU < len(run.CPUSoftirqPct):
		run.ReplicatorCPUPct = run.CPUSoftirqPct[t.genCPU]
	}
	if run.ReplicatorCPUPct > 0 {
		run.EgressPerCPUSecond = float64(int64(run.EgressPPS / (run.ReplicatorCPUPct / 100)))
	}
	// Let the backlogs drain before the next replicator.
	return sleepOrDone(ctx, 200*time.Millisecond)
}

// confineThreads puts every thread of this process on cpu and returns a
// function that gives every thread, those started since included, the
// calling thread's CPU set back. Processes started before keep theirs.
func confineThreads(cpu int) (restore func(), err error) {
	var one unix.CPUSet
	one.Set(cpu)
	return setThreadsAffinity(&one)
}

// avoidCPU keeps every thread of this process off cpu (threads started
// later inherit it from their creators), leaving that CPU to the one thread
// that pins itself there afterwards. restore is as for confineThreads.
func avoidCPU(cpu int) (restore func(), err error) {
	var rest unix.CPUSet
	if err := unix.SchedGetaffinity(0, &rest); err != nil {
		return nil, fmt.Errorf("CPU affinity: %w", err)
	}
	rest.Clear(cpu)
	if rest.Count() == 0 {
		return nil, fmt.Errorf("keeping this process off CPU %d: no other CPU to run on", cpu)
	}
	return setThreadsAffinity(&rest)
}

// setThreadsAffinity sets every thread's CPU set; see confineThreads.
func setThreadsAffinity(to *unix.CPUSet) (restore func(), err error) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return nil, fmt.Errorf("CPU affinity: %w", err)
	}
	setAll := func(set *unix.CPUSet) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		var errs []error
		for _, e := range tasks {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			// A thread may have exited since the listing.
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
			}
		}
		return errors.Join(errs...)
	}
	restore = func() { _ = setAll(&orig) }
	if err := setAll(to); err != nil {
		restore()
		return nil, fmt.Errorf("setting this process's CPU affinity: %w", err)
	}
	return restore, nil
}

// vethSnapshot is one reading of every counter.
type vethSnapshot struct {
	at       time.Time
	sent     uint64
	in       uint64
	inDrop   uint64 // g0's tx_dropped
	outDrop  uint64 // o1..oN's tx_dropped
	outputs  []uint64
	cpus     []cpuTimes
	procUser uint64
	procSys  uint64
}

func (t *vethTopology) snapshot(pid int) (*vethSnapshot, error) {
	s := &vethSnapshot{}
	var err error
	if s.cpus, err = readCPUTimes(); err != nil {
		return nil, err
	}
	if pid > 0 {
		if s.procUser, s.procSys, err = processTicks(pid); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	sink, err := readLinkCounters(t.sink)
	if err != nil {
		return nil, fmt.Errorf("counters in %s: %w", t.sink, err)
	}
	t1 := time.Now()
	s.at = t0.Add(t1.Sub(t0) / 2)
	for i := 1; i <= t.outputs; i++ {
		c, ok := sink[fmt.Sprintf("r%d", i)]
		if !ok {
			return nil, fmt.Errorf("no r%d in %s", i, t.sink)
		}
		s.outputs = append(s.outputs, c.rxPackets)
	}
	dut, err := readLinkCounters(t.dut)
	if err != nil {
		return nil, fmt.Errorf("counters in %s: %w", t.dut, err)
	}
	s.in = dut["in"].rxPackets
	for i := 1; i <= t.outputs; i++ {
		s.outDrop += dut[fmt.Sprintf("o%d", i)].txDropped
	}
	gen, err := readLinkCounters(t.gen)
	if err != nil {
		return nil, fmt.Errorf("counters in %s: %w", t.gen, err)
	}
	s.inDrop = gen["g0"].txDropped
	s.sent = t.g.sent.Load()
	return s, nil
}

func fillRun(run *VethRun, a, b *vethSnapshot, outputs int, proc bool) {
	el := b.at.Sub(a.at).Seconds()
	run.Seconds = el
	run.OfferedPPS = float64(b.sent-a.sent) / el
	run.IngressPPS = float64(b.in-a.in) / el
	run.IngressDropped, run.EgressDropped = b.inDrop-a.inDrop, b.outDrop-a.outDrop
	run.MinPPSPerOutput = -1
	var total uint64
	for i := range outputs {
		n := b.outputs[i] - a.outputs[i]
		run.OutputPackets = append(run.OutputPackets, n)
		total += n
		pps := float64(n) / el
		if run.MinPPSPerOutput < 0 || pps < run.MinPPSPerOutput {
			run.MinPPSPerOutput = pps
		}
		run.MaxPPSPerOutput = max(run.MaxPPSPerOutput, pps)
	}
	run.EgressPPS = float64(total) / el
	run.PPSPerOutput = run.EgressPPS / float64(outputs)
	for i := range min(len(a.cpus), len(b.cpus)) {
		d := b.cpus[i].sub(a.cpus[i])
		run.CPUBusyPct = append(run.CPUBusyPct, sharePct(d.busy, d.total))
		run.CPUSoftirqPct = append(run.CPUSoftirqPct, sharePct(d.softirq, d.total))
	}
	if proc {
		run.ProcessUserPct = round1dp(float64(b.procUser-a.procUser) / clockTicks / el * 100)
		run.ProcessSystemPct = round1dp(float64(b.procSys-a.procSys) / clockTicks / el * 100)
		run.ProcessCPUPct = round1dp(float64(b.procUser+b.procSys-a.procUser-a.procSys) / clockTicks / el * 100)
	}
}

func sharePct(part, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return round1dp(float64(part) / float64(total) * 100)
}

func round1dp(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// cpuTimes is one CPU's line of /proc/stat, in clock ticks.
type cpuTimes struct{ busy, softirq, total uint64 }

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{busy: c.busy - o.busy, softirq: c.softirq - o.softirq, total: c.total - o.total}
}

// readCPUTimes reads /proc/stat's per-CPU lines, indexed by CPU number.
func readCPUTimes() ([]cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	return parseCPUTimes(b)
}

// parseCPUTimes parses "cpuN user nice system idle iowait irq softirq steal
// ...": busy is everything but idle and iowait (guest time is already in
// user).
func parseCPUTimes(b []byte) ([]cpuTimes, error) {
	var out []cpuTimes
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil || n < 0 || n > 1<<16 {
			return nil, fmt.Errorf("/proc/stat: bad line %q", sc.Text())
		}
		var v [8]uint64
		for i := range v {
			if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return nil, fmt.Errorf("/proc/stat: bad line %q", sc.Text())
			}
		}
		var c cpuTimes
		for _, x := range v {
			c.total += x
		}
		c.busy = c.total - v[3] - v[4]
		c.softirq = v[6]
		for len(out) <= n {
			out = append(out, cpuTimes{})
		}
		out[n] = c
	}
	if len(out) == 0 {
		return nil, errors.New("/proc/stat: no per-CPU lines")
	}
	return out, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// processTicks is a process's user and system time from /proc/PID/stat.
func processTicks(pid int) (user, sys uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcessTicks(string(b))
}

// parseProcessTicks reads utime and stime, fields 14 and 15, counted after
// the command name in parentheses (which may hold spaces).
func parseProcessTicks(stat string) (user, sys uint64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/PID/stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/PID/stat: %d fields after the name", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/PID/stat: bad utime/stime %q %q", f[11], f[12])
	}
	return u, s, nil
}

// linkCounters are the rtnetlink statistics of one interface.
type linkCounters struct{ rxPackets, txPackets, rxDropped, txDropped uint64 }

// readLinkCounters dumps the links of namespace ns over rtnetlink (a socket
// opened in the namespace) and returns their 64-bit counters by name.
func readLinkCounters(ns string) (map[string]linkCounters, error) {
	var rib []byte
	err := afpacket.InNetns(ns, func() error {
		var err error
		rib, err = syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
		return err
	})
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, err
	}
	out := map[string]linkCounters{}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWLINK {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return nil, err
		}
		var name string
		var st []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				name = strings.TrimRight(string(a.Value), "\x00")
			case unix.IFLA_STATS64:
				st = a.Value
			}
		}
		// struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes,
		// tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped, ...
		if name == "" || len(st) < 64 {
			continue
		}
		u := func(off int) uint64 { return binary.NativeEndian.Uint64(st[off:]) }
		out[name] = linkCounters{rxPackets: u(0), txPackets: u(8), rxDropped: u(48), txDropped: u(56)}
	}
	return out, nil
}

// generator blasts one frame from a packet socket (step 3).
type generator struct {
	fd    int
	msgs  *ffi.Mmsgs
	frame []byte
	// sent counts the frames sendmmsg took.
	sent atomic.Uint64
	quit atomic.Bool
	done chan error
}

// openGenerator opens a packet socket on dev in namespace ns. It sends
// only: protocol 0, so nothing is queued to it; qdisc bypassed.
func openGenerator(ns, dev string, frame []byte) (*generator, error) {
	g := &generator{fd: -1, msgs: ffi.NewMmsgs(genBatch), frame: frame}
	err := afpacket.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		g.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index})
	})
	if err != nil {
		g.close()
		return nil, fmt.Errorf("generator on %s in %s: %w", dev, ns, err)
	}
	for i := range genBatch {
		g.msgs.Set(i, g.frame, nil)
	}
	return g, nil
}

// start sends until stop, on a thread of its own pinned to cpu (-1: not
// pinned). The thread gets its CPU set back before it returns to the
// runtime. It must not die instead (exit locked): a process started from
// that thread with a parent-death signal, as lab processes are, would be
// killed with it.
func (g *generator) start(cpu int) {
	g.done = make(chan error, 1)
	go func() { g.done <- g.loop(cpu) }()
}

func (g *generator) loop(cpu int) error {
	runtime.LockOSThread()
	if cpu >= 0 {
		var orig, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &orig); err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("generator: CPU affinity: %w", err)
		}
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("generator: pin to CPU %d: %w", cpu, err)
		}
		defer func() {
			// Unpinned again, the thread may serve other goroutines; if
			// that fails it stays locked and ends with this one.
			if unix.SchedSetaffinity(0, &orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
	} else {
		defer runtime.UnlockOSThread()
	}
	for !g.quit.Load() {
		n, errno := g.msgs.Send(g.fd, 0, genBatch, 0)
		switch errno {
		case 0:
			g.sent.Add(uint64(n))
		case unix.EINTR, unix.EAGAIN, unix.ENOBUFS:
		default:
			return fmt.Errorf("generator: sendmmsg: %w", errno)
		}
	}
	return nil
}

// stop ends the sending goroutine and returns its error.
func (g *generator) stop() error {
	if g.done == nil {
		return nil
	}
	g.quit.Store(true)
	err := <-g.done
	g.done = nil
	return err
}

func (g *generator) close() {
	_ = g.stop()
	g.msgs.Clear()
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}
