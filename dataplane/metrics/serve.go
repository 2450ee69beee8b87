// The /metrics endpoint. In: a listen address and the collectors to expose
// (usually one from NewSwitchCollector). Out: an HTTP server, running until
// its context ends, that answers GET /metrics from a registry of its own
// holding those collectors plus the Go runtime and process collectors.

package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownGrace bounds how long Serve waits for scrapes in flight once its
// context ends.
const shutdownGrace = 5 * time.Second

// Serve listens on addr ("127.0.0.1:9470", ":0", ...) and serves /metrics in
// the background until ctx ends, then shuts the server down. It returns the
// address it bound (useful with port 0), or an error if a collector does not
// register (duplicate or inconsistent descriptors) or addr cannot be bound.
func Serve(ctx context.Context, addr string, cs ...prometheus.Collector) (net.Addr, error) {
	return ServeWith(ctx, addr, nil, cs...)
}

// ServeWith is Serve with more handlers on the same server, by path (the
// switch's FaultPath).
func ServeWith(ctx context.Context, addr string, handlers map[string]http.Handler, cs ...prometheus.Collector) (net.Addr, error) {
	reg := prometheus.NewRegistry()
	all := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, cs...)
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register collector: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	for path, h := range handlers {
		mux.Handle(path, h)
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr(), nil
}
