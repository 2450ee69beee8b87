package sriov

// sriov.sh cannot run for real here (no VFIO, no SR-IOV NIC): these tests
// run it with --dry-run and check the commands and the config it prints,
// and its argument validation.

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func runScript(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found")
	}
	out, err := exec.Command("bash", append([]string{"sriov.sh"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestDryRun(t *testing.T) {
	out, err := runScript(t, "--dry-run", "--pf", "enp3s0f0", "--vfs", "2", "--vlan", "100",
		"--vf-pci", "0000:03:02.0,0000:03:02.1", "--lcores", "2-3", "--route", "1-4=vf0", "--route", "5-8,9=vf1",
		"--config", "/etc/sparsecast/sw1.yaml", "--binary", "/usr/local/bin/sparsecast", "--name", "sw1")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	// The commands, in this order.
	want := []string{
		`+ echo 0 > /sys/class/net/enp3s0f0/device/sriov_numvfs`,
		`+ echo 2 > /sys/class/net/enp3s0f0/device/sriov_numvfs`,
		`+ ip link set enp3s0f0 vf 0 mac 02:53:56:00:00:00`,
		`+ ip link set enp3s0f0 vf 0 vlan 100`,
		`+ ip link set enp3s0f0 vf 0 trust on`,
		`+ ip link set enp3s0f0 vf 1 mac 02:53:56:00:00:01`,
		`+ ip link set enp3s0f0 vf 1 vlan 100`,
		`+ ip link set enp3s0f0 vf 1 trust on`,
		`+ modprobe vfio-pci`,
		`dpdk-devbind.py --bind=vfio-pci 0000:03:02.0 0000:03:02.1`,
		`+ echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`,
		`+ mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages-sw1`,
		`+ cat > /etc/sparsecast/sw1.yaml <<EOF`,
		`name: sw1`,
		`eal_args:`,
		"  - \"-l\"\n  - \"2-3\"\n  - \"-n\"\n  - \"4\"\n  - \"--file-prefix\"\n  - \"sw1\"",
		"  - \"-a\"\n  - \"0000:03:02.0\"\n  - \"-a\"\n  - \"0000:03:02.1\"",
		"  - name: vf0\n    type: dpdk\n    device: \"0000:03:02.0\"",
		"  - name: vf1\n    type: dpdk\n    device: \"0000:03:02.1\"",
		`  - {receivers: "1-4", port: vf0}`,
		`  - {receivers: "5-8,9", port: vf1}`,
		`+ exec /usr/local/bin/sparsecast switch run --config /etc/sparsecast/sw1.yaml`,
	}
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("dry run output lacks %q (or it is out of order); output:\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
	if !strings.Contains(out, "make build-dpdk") {
		t.Errorf("output does not say the config needs a make build-dpdk binary")
	}
	// Every command line is printed, none is run: no "+ " line may be
	// followed by the output of a command.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "Permission denied") || strings.Contains(line, "No such file") {
			t.Errorf("dry run seems to have run something: %q", line)
		}
	}
}

func TestDryRunWithoutAddresses(t *testing.T) {
	out, err := runScript(t, "--dry-run", "--pf", "sc-nonexistent0", "--vfs", "1", "--no-start", "--trust", "off", "--hugepages", "0")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, w := range []string{"trust off", "<pci-of-sc-nonexistent0-vf0>", "pass --vf-pci"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, no := range []string{"switch run", "nr_hugepages", " vlan "} {
		if strings.Contains(out, no) {
			t.Errorf("output has %q, want it left out:\n%s", no, out)
		}
	}
}

func TestValidation(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dry-run", "--vfs", "2"}, "--pf is required"},
		{[]string{"--dry-run", "--pf", "eth0"}, "--vfs is required"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "0"}, "--vfs '0': want 1-256"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "x"}, "--vfs 'x': want 1-256"},
		{[]string{"--dry-run", "--pf", "eth0;rm", "--vfs", "1"}, "is not an interface name"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--vlan", "4095"}, "--vlan '4095': want 1-4094"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--trust", "yes"}, "--trust 'yes': want on or off"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--mac-base", "01:00:00:00:00:00"}, "is a multicast address"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--mac-base", "zz"}, "want aa:bb:cc:dd:ee:ff"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "2", "--vf-pci", "0000:03:02.0"}, "--vf-pci has 1 addresses for --vfs 2"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--vf-pci", "03:02.0"}, "is not a PCI address"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--route", "1-4=vf1"}, "port vf1 does not exist"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--route", "a=vf0"}, "want IDS=vfI"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--driver", "igb_uio"}, "want vfio-pci or uio_pci_generic"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--config", "rel.yaml"}, "want an absolute path"},
		{[]string{"--dry-run", "--pf", "eth0", "--vfs", "1", "--bogus"}, "unknown argument '--bogus'"},
		{[]string{"--dry-run", "--pf"}, "--pf needs a value"},
	} {
		out, err := runScript(t, c.args...)
		if err == nil {
			t.Errorf("%v: succeeded, want an error", c.args)
			continue
		}
		if !strings.Contains(out, "sriov.sh: error: "+c.want) && !strings.Contains(out, c.want) {
			t.Errorf("%v: output %q lacks %q", c.args, out, c.want)
		}
		if regexp.MustCompile(`(?m)^\+ `).MatchString(out) {
			t.Errorf("%v: printed commands before failing validation:\n%s", c.args, out)
		}
	}
}

func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed")
	}
	if out, err := exec.Command(sc, "sriov.sh").CombinedOutput(); err != nil {
		t.Errorf("shellcheck sriov.sh: %v\n%s", err, out)
	}
}
