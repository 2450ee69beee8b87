package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
)

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewSwitchCollector("sw1", testPorts, testCores(), WithPortStats(testPortStats))
	addr, err := Serve(ctx, "127.0.0.1:0", c)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr.String() + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	for _, want := range []string{
		`sparsecast_switch_info{name="sw1"} 1`,
		`sparsecast_switch_port_receive_packets_total{port="eth0"} 15`,
		`sparsecast_switch_port_transmit_bytes_total{port="eth1"} 3100`,
		`sparsecast_switch_port_kernel_drops_total{port="eth0"} 12`,
		`sparsecast_switch_drops_total{reason="no_route"} 7`,
		`sparsecast_switch_drops_total{reason="bad_set"} 0`,
		`sparsecast_switch_replication_fanout_bucket{le="2"} 5`,
		`sparsecast_switch_replication_fanout_count 8`,
		`sparsecast_switch_worker_polls_total{worker="1"} 50`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
		"promhttp_metric_handler_requests_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q", want)
		}
	}

	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still answers after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewSwitchCollector("sw", []string{"p"}, []*dataplane.CoreCounters{dataplane.NewCoreCounters(1)})
	if _, err := Serve(ctx, "127.0.0.1:0", c, c); err == nil {
		t.Error("Serve registered the same collector twice")
	}
	if _, err := Serve(ctx, "127.0.0.1:-1", c); err == nil {
		t.Error("Serve bound a bad address")
	}
}
