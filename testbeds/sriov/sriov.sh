#!/usr/bin/env bash
# sriov.sh: run a sparsecast switch on SR-IOV virtual functions through DPDK.
#
# Creates N VFs on a physical function (sysfs sriov_numvfs), gives each a
# MAC, an optional VLAN and trust (ip link set PF vf I ...), binds them to
# vfio-pci with Debian's dpdk-devbind.py, writes a switch config whose ports
# are of type dpdk (one per VF, by PCI address, with the EAL arguments at the
# top level) and starts `sparsecast switch run` on it.
#
# The dpdk port type needs a binary built with DPDK: `make build-dpdk`
# (Debian's libdpdk-dev 22.11; the cgo layer is behind the dpdk build tag).
# A plain `make build` binary rejects `type: dpdk`. The machine needs VFIO
# (an IOMMU: intel_iommu=on or amd_iommu=on) and hugepages.
#
# Usage:
#   sriov.sh --pf IFACE --vfs N [options]
#
# Options:
#   --pf IFACE           physical function (a netdev with sriov_totalvfs)
#   --vfs N              number of VFs to create, 1-256 (and at most
#                        the PF's sriov_totalvfs)
#   --mac-base MAC       VF i gets MAC-base + i (default 02:53:56:00:00:00)
#   --vlan VID           put every VF in VLAN VID (1-4094; default none)
#   --trust on|off       VF trust, needed for promiscuous receive (default on)
#   --driver DRV         vfio-pci (default) or uio_pci_generic
#   --vf-pci LIST        the VFs' PCI addresses, comma-separated (default:
#                        read from /sys/class/net/PF/device/virtfnI)
#   --lcores LIST        EAL cores, e.g. 2 or 2-3 (default 1)
#   --hugepages N        2 MiB hugepages to reserve (default 1024; 0: leave)
#   --route IDS=PORT     route receiver IDs (1-4,7) to port vfI; repeatable
#   --name NAME          switch name (default sriov-PF)
#   --config FILE        config to write (default /etc/sparsecast/sriov-PF.yaml)
#   --binary PATH        sparsecast built with make build-dpdk
#                        (default: sparsecast on PATH)
#   --metrics-addr ADDR  Prometheus /metrics (default 127.0.0.1:9470)
#   --no-start           set up and write the config, do not start the switch
#   --dry-run            print every command and the config; change nothing
#   -h, --help           this text

set -Eeuo pipefail

prog=sriov.sh
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 2
}
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

pf='' vfs='' mac_base=02:53:56:00:00:00 vlan='' trust=on driver=vfio-pci vf_pci=''
lcores=1 hugepages=1024 name='' config='' binary='' metrics=127.0.0.1:9470
start=1 dry=0
routes=()

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--pf) need_arg "$@"; pf=$2; shift 2 ;;
	--vfs) need_arg "$@"; vfs=$2; shift 2 ;;
	--mac-base) need_arg "$@"; mac_base=$2; shift 2 ;;
	--vlan) need_arg "$@"; vlan=$2; shift 2 ;;
	--trust) need_arg "$@"; trust=$2; shift 2 ;;
	--driver) need_arg "$@"; driver=$2; shift 2 ;;
	--vf-pci) need_arg "$@"; vf_pci=$2; shift 2 ;;
	--lcores) need_arg "$@"; lcores=$2; shift 2 ;;
	--hugepages) need_arg "$@"; hugepages=$2; shift 2 ;;
	--route) need_arg "$@"; routes+=("$2"); shift 2 ;;
	--name) need_arg "$@"; name=$2; shift 2 ;;
	--config) need_arg "$@"; config=$2; shift 2 ;;
	--binary) need_arg "$@"; binary=$2; shift 2 ;;
	--metrics-addr) need_arg "$@"; metrics=$2; shift 2 ;;
	--no-start) start=0; shift ;;
	--dry-run) dry=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done

# ---- validation ------------------------------------------------------------

[[ -n $pf ]] || die "--pf is required"
[[ $pf =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--pf '$pf' is not an interface name"
[[ -n $vfs ]] || die "--vfs is required"
if ! [[ $vfs =~ ^[0-9]+$ ]] || ((vfs < 1 || vfs > 256)); then die "--vfs '$vfs': want 1-256"; fi
[[ $mac_base =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || die "--mac-base '$mac_base': want aa:bb:cc:dd:ee:ff"
(( (16#${mac_base:0:2} & 1) == 0 )) || die "--mac-base '$mac_base' is a multicast address"
if [[ -n $vlan ]]; then
	if ! [[ $vlan =~ ^[0-9]+$ ]] || ((vlan < 1 || vlan > 4094)); then die "--vlan '$vlan': want 1-4094"; fi
fi
[[ $trust == on || $trust == off ]] || die "--trust '$trust': want on or off"
[[ $driver == vfio-pci || $driver == uio_pci_generic ]] || die "--driver '$driver': want vfio-pci or uio_pci_generic"
[[ $lcores =~ ^[0-9]+([-,][0-9]+)*$ ]] || die "--lcores '$lcores': want a core list such as 1 or 2-3"
[[ $hugepages =~ ^[0-9]+$ ]] || die "--hugepages '$hugepages': want a number of 2 MiB pages"
[[ -n $name ]] || name=sriov-$pf
[[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "--name '$name': letters, digits, _ . - only"
[[ -n $config ]] || config=/etc/sparsecast/$name.yaml
[[ $config == /* ]] || die "--config '$config': want an absolute path"

for r in "${routes[@]}"; do
	[[ $r =~ ^([0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)=vf([0-9]+)$ ]] ||
		die "--route '$r': want IDS=vfI, e.g. 1-4,7=vf0"
	((BASH_REMATCH[5] < vfs)) || die "--route '$r': port vf${BASH_REMATCH[5]} does not exist (--vfs $vfs)"
done

# VF PCI addresses: given, or read from sysfs.
pci_re='^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$'
sys_dev=/sys/class/net/$pf/device
addrs=()
if [[ -n $vf_pci ]]; then
	IFS=, read -r -a addrs <<<"$vf_pci"
	((${#addrs[@]} == vfs)) || die "--vf-pci has ${#addrs[@]} addresses for --vfs $vfs"
	for a in "${addrs[@]}"; do
		[[ $a =~ $pci_re ]] || die "--vf-pci: '$a' is not a PCI address (0000:03:02.0)"
	done
fi

if ((!dry)); then
	[[ $(id -u) -eq 0 ]] || die "run as root (or use --dry-run)"
	[[ -d /sys/class/net/$pf ]] || die "no interface $pf"
	[[ -r $sys_dev/sriov_totalvfs ]] || die "$pf has no SR-IOV (no $sys_dev/sriov_totalvfs)"
	total=$(<"$sys_dev/sriov_totalvfs")
	((vfs <= total)) || die "$pf supports $total VFs, asked for $vfs"
	[[ -d /sys/kernel/iommu_groups && -n $(ls -A /sys/kernel/iommu_groups) ]] ||
		die "no IOMMU groups: boot with intel_iommu=on (or amd_iommu=on) iommu=pt for vfio-pci"
fi

devbind=$(command -v dpdk-devbind.py || true)
for c in /usr/sbin/dpdk-devbind.py /usr/bin/dpdk-devbind.py /usr/share/dpdk/usertools/dpdk-devbind.py; do
	[[ -n $devbind ]] && break
	[[ -x $c ]] && devbind=$c
done
if [[ -z $devbind ]]; then
	((dry)) || die "dpdk-devbind.py not found: apt-get install dpdk"
	devbind=dpdk-devbind.py
fi
if [[ -z $binary ]]; then
	binary=$(command -v sparsecast || true)
	if [[ -z $binary ]]; then
		((dry)) || ((!start)) || die "no sparsecast on PATH: pass --binary (built with make build-dpdk)"
		binary=sparsecast
	fi
fi

# ---- helpers -----------------------------------------------------------------

run() {
	printf '+ %s\n' "$*"
	((dry)) || "$@"
}
# write VALUE FILE: echo VALUE > FILE, printed first.
write() {
	printf '+ echo %s > %s\n' "$1" "$2"
	((dry)) || echo "$1" >"$2"
}
# mac_plus BASE I: BASE + I as a MAC address.
mac_plus() {
	local hex=${1//:/} n
	n=$(( (16#$hex + $2) & 0xFFFFFFFFFFFF ))
	printf '%012x' "$n" | sed -E 's/(..)(..)(..)(..)(..)(..)/\1:\2:\3:\4:\5:\6/'
}

echo "# sriov.sh: $vfs VFs on $pf, driver $driver, switch $name$( ((dry)) && echo ' (dry run: nothing is changed)')"

# ---- VFs -----------------------------------------------------------------------

# The kernel refuses to change a non-zero VF count directly: reset to 0 first.
write 0 "$sys_dev/sriov_numvfs"
write "$vfs" "$sys_dev/sriov_numvfs"
for ((i = 0; i < vfs; i++)); do
	run ip link set "$pf" vf "$i" mac "$(mac_plus "$mac_base" "$i")"
	if [[ -n $vlan ]]; then
		run ip link set "$pf" vf "$i" vlan "$vlan"
	fi
	run ip link set "$pf" vf "$i" trust "$trust"
	# The switch rewrites source MACs to the VF's own: spoof checking can stay on.
done

if ((${#addrs[@]} == 0)); then
	for ((i = 0; i < vfs; i++)); do
		if ((dry)) && [[ ! -e $sys_dev/virtfn$i ]]; then
			addrs+=("<pci-of-$pf-vf$i>")
			echo "# $sys_dev/virtfn$i does not exist yet; pass --vf-pci to see real addresses"
		else
			link=$(readlink "$sys_dev/virtfn$i") || die "no $sys_dev/virtfn$i after creating the VFs"
			addrs+=("$(basename "$link")")
		fi
	done
fi

# ---- DPDK ------------------------------------------------------------------------

run modprobe "$driver"
run "$devbind" --bind="$driver" "${addrs[@]}"
if ((hugepages > 0)); then
	write "$hugepages" /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
	run mkdir -p "/dev/hugepages-$name"
	if ((dry)) || ! mountpoint -q "/dev/hugepages-$name"; then
		run mount -t hugetlbfs -o pagesize=2M nodev "/dev/hugepages-$name"
	fi
fi

# ---- config ----------------------------------------------------------------------

render_config() {
	echo "# Written by testbeds/sriov/sriov.sh: $vfs SR-IOV VFs of $pf as DPDK ports."
	echo "# Needs a sparsecast built with 'make build-dpdk'."
	echo "name: $name"
	echo "poll_mode: busy"
	echo "workers: 1"
	echo "metrics_addr: $metrics"
	echo "eal_args:"
	printf '  - "%s"\n' -l "$lcores" -n 4 --file-prefix "$name" --huge-dir "/dev/hugepages-$name" --huge-unlink
	for a in "${addrs[@]}"; do
		printf '  - "%s"\n' -a "$a"
	done
	echo "ports:"
	for ((i = 0; i < vfs; i++)); do
		echo "  - name: vf$i"
		echo "    type: dpdk"
		echo "    device: \"${addrs[$i]}\""
	done
	if ((${#routes[@]} > 0)); then
		echo "routes:"
		for r in "${routes[@]}"; do
			echo "  - {receivers: \"${r%=*}\", port: ${r##*=}}"
		done
	fi
}

run mkdir -p "$(dirname "$config")"
echo "+ cat > $config <<EOF"
render_config
echo "EOF"
if ((!dry)); then
	render_config >"$config"
fi

# ---- switch ------------------------------------------------------------------------

if ((start)); then
	if ((dry)); then
		printf '+ exec %s switch run --config %s\n' "$binary" "$config"
	else
		printf '+ exec %s switch run --config %s\n' "$binary" "$config"
		exec "$binary" switch run --config "$config"
	fi
fi
