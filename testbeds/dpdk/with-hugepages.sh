#!/bin/sh
# Run a command with 2 MiB hugepages reserved for DPDK, and give them back
# afterwards, whether the command passes, fails or is interrupted:
#   testbeds/dpdk/with-hugepages.sh [-n PAGES] COMMAND [ARGS...]
#
# As root: adds PAGES (default 256, 512 MiB) to nr_hugepages, remembering
# the value before, mounts a hugetlbfs of its own and runs COMMAND with
# SPARSECAST_DPDK_HUGE_DIR naming it; the DPDK tests then run EAL with
# --huge-dir DIR --huge-unlink instead of --no-huge. When the pages cannot
# all be reserved (not root, memory too fragmented) or the mount fails,
# COMMAND runs without hugepages (SPARSECAST_DPDK_HUGE_DIR unset), as the
# tests do by default. Afterwards the mount and its directory go and
# nr_hugepages is set back to the value before (if something else changed
# it meanwhile, only the pages added here are taken off). Exits with
# COMMAND's status. `make test-dpdk` runs the DPDK tests through it.
set -u
pages=256
if [ "${1:-}" = "-n" ]; then
	if [ $# -lt 2 ]; then
		echo "usage: $0 [-n PAGES] COMMAND [ARGS...]" >&2
		exit 2
	fi
	pages=$2
	shift 2
fi
case "$pages" in
'' | *[!0-9]*)
	echo "$0: -n $pages: want a number of 2 MiB pages" >&2
	exit 2
	;;
esac
if [ $# -eq 0 ]; then
	echo "usage: $0 [-n PAGES] COMMAND [ARGS...]" >&2
	exit 2
fi
NR=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
prev=
added=0
dir=

cleanup() {
	if [ -n "$dir" ]; then
		umount "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null ||
			echo "with-hugepages: could not unmount $dir" >&2
		rmdir "$dir" 2>/dev/null
		dir=
	fi
	if [ -n "$prev" ]; then
		cur=$(cat "$NR")
		back=$prev
		if [ "$cur" -ne $((prev + added)) ]; then
			back=$((cur - added))
			[ "$back" -ge 0 ] || back=0
			echo "with-hugepages: nr_hugepages changed meanwhile ($cur); taking off the $added pages added here" >&2
		fi
		echo "$back" >"$NR" 2>/dev/null || echo "with-hugepages: could not set nr_hugepages back to $back" >&2
		echo "with-hugepages: nr_hugepages back to $(cat "$NR") (was $prev)" >&2
		prev=
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

reserve() {
	[ "$(id -u)" = 0 ] || { echo "with-hugepages: not root: running without hugepages" >&2; return 1; }
	[ -w "$NR" ] || { echo "with-hugepages: $NR not writable: running without hugepages" >&2; return 1; }
	prev=$(cat "$NR")
	echo $((prev + pages)) >"$NR" 2>/dev/null
	got=$(cat "$NR")
	added=$((got - prev))
	if [ "$added" -lt "$pages" ]; then
		echo "with-hugepages: only $added of $pages pages reserved: running without hugepages" >&2
		return 1
	fi
	dir=$(mktemp -d /tmp/sc-hugepages.XXXXXX) || return 1
	if ! mount -t hugetlbfs -o pagesize=2M nodev "$dir"; then
		echo "with-hugepages: mounting hugetlbfs failed: running without hugepages" >&2
		return 1
	fi
	echo "with-hugepages: $pages pages of 2 MiB reserved (nr_hugepages $prev -> $got), hugetlbfs at $dir" >&2
}

if reserve; then
	SPARSECAST_DPDK_HUGE_DIR=$dir "$@"
else
	cleanup
	unset SPARSECAST_DPDK_HUGE_DIR
	"$@"
fi
status=$?
exit "$status"
