#!/bin/sh
# dpdk-testpmd in io mode over two virtual devices of one kind on one
# forwarding core: the reference `sparsecast bench dpdk --vs-testpmd` runs.
#   testbeds/dpdk/testpmd.sh [net_null|net_ring] [SIZE] [SECONDS] [CPU]
# Uses hugepages when testbeds/dpdk/hugepages.sh has reserved them.
set -eu
kind=${1:-net_null}; size=${2:-64}; secs=${3:-5}; cpu=${4:-1}
main=$(( (cpu + 1) % $(nproc) ))
DIR=${SPARSECAST_HUGE_DIR:-/mnt/sparsecast-huge}
if mountpoint -q "$DIR" 2>/dev/null; then
	mem="--huge-dir $DIR --huge-unlink -m 256"
else
	mem="--no-huge -m 1024"
fi
case "$kind" in
net_null) a="net_null0,size=$size"; b="net_null1,size=$size"; first="" ;;
net_ring) a=net_ring0; b=net_ring1; first="--tx-first" ;;
*) echo "kind: net_null or net_ring" >&2; exit 2 ;;
esac
# --stats-period prints rates every second until SIGINT.
exec timeout -s INT "$secs" dpdk-testpmd -l "$main,$cpu" --main-lcore "$main" --no-pci $mem \
	--file-prefix "sc-testpmd-$$" --log-level '*:warning' --vdev "$a" --vdev "$b" \
	-- --forward-mode=io --nb-cores=1 --stats-period 1 $first </dev/null
