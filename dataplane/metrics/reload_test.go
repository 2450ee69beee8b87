package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sparsecast/sparsecast/dataplane"
)

func TestReloadCounters(t *testing.T) {
	var rc dataplane.ReloadCounters
	rc.Applied.Add(3)
	rc.Rejected.Add(1)
	c := NewSwitchCollector("sw1", testPorts, testCores(), WithReloads(&rc))
	want := `# HELP sparsecast_switch_config_reloads_total Reloads of the config's routes and groups (SIGHUP): applied, or rejected (the file did not load or build tables; the switch kept its tables).
# TYPE sparsecast_switch_config_reloads_total counter
sparsecast_switch_config_reloads_total{result="applied"} 3
sparsecast_switch_config_reloads_total{result="rejected"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "sparsecast_switch_config_reloads_total"); err != nil {
		t.Error(err)
	}
	// Without the option, no series.
	if n := testutil.CollectAndCount(NewSwitchCollector("sw1", testPorts, testCores()), "sparsecast_switch_config_reloads_total"); n != 0 {
		t.Errorf("%d reload series without WithReloads", n)
	}
}
