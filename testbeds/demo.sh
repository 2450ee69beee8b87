#!/usr/bin/env bash
# The main job: bring up the leaf-spine lab fabric, run the scenarios on it,
# print their summaries, and take the fabric down again (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SPARSECAST:-bin/sparsecast}
topology=${TOPOLOGY:-testbeds/leafspine.yaml}
trap '"$bin" testbed down >/dev/null' EXIT
"$bin" testbed up --topology "$topology"
"$bin" testbed status
status=0
for scenario in ${SCENARIOS:-checkpoint moe failover}; do
	echo
	echo "== scenario: $scenario"
	"$bin" testbed run "$scenario" || status=1
done
echo
if [ "$status" = 0 ]; then echo "demo: every scenario delivered"; else echo "demo: a scenario failed (see above)"; fi
exit "$status"
