#!/bin/sh
# Reserve or release 2 MiB hugepages for DPDK, with a hugetlbfs of our own.
#   testbeds/dpdk/hugepages.sh reserve [PAGES]   # default 256 pages (512 MiB)
#   testbeds/dpdk/hugepages.sh release
#   testbeds/dpdk/hugepages.sh status
# Then run DPDK with: --huge-dir /mnt/sparsecast-huge --huge-unlink -m 256
# (eal_args in a switch config). Without --huge-unlink, hugepage files stay
# behind in the mount until release.
set -eu
DIR=${SPARSECAST_HUGE_DIR:-/mnt/sparsecast-huge}
NR=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
cmd=${1:-status}
case "$cmd" in
reserve)
	want=${2:-256}
	cur=$(cat "$NR")
	echo $((cur + want)) > "$NR"
	got=$(cat "$NR")
	if [ "$got" -lt $((cur + want)) ]; then
		echo "only $((got - cur)) of $want pages reserved (memory fragmented?)" >&2
	fi
	mkdir -p "$DIR"
	mountpoint -q "$DIR" || mount -t hugetlbfs -o pagesize=2M nodev "$DIR"
	echo "$((got - cur)) pages reserved, hugetlbfs at $DIR"
	;;
release)
	if mountpoint -q "$DIR"; then
		rm -f "$DIR"/* 2>/dev/null || true
		umount "$DIR"
	fi
	rmdir "$DIR" 2>/dev/null || true
	echo 0 > "$NR"
	echo "hugepages released"
	;;
status)
	grep -i huge /proc/meminfo
	mountpoint "$DIR" 2>/dev/null || true
	;;
*)
	echo "usage: $0 reserve [PAGES] | release | status" >&2
	exit 2
	;;
esac
