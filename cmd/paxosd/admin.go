package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/server"
)

// adminFlags are serve's admin listener flags.
func adminFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen-admin", Usage: "serve /metrics (Prometheus), /healthz, /readyz and /debug/pprof/ over HTTP on this address, e.g. 127.0.0.1:7201 (off by default; keep it on loopback or a private network: it has no authentication)", EnvVars: env("LISTEN_ADMIN")},
		&cli.Uint64Flag{Name: "ready-max-lag", Value: 1000, Usage: "/readyz fails while this member's learner is more than this many slots behind the chosen ones", EnvVars: env("READY_MAX_LAG")},
	}
}

// adminHandler serves a member's metrics, health, readiness and profiles.
func adminHandler(srv *server.Server, maxLag uint64) http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(srv.Metrics().Registry(), promhttp.HandlerOpts{})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		srv.SampleMetrics(ctx) // NB: a member too busy to answer is scraped as last sampled
		cancel()
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := srv.Health(ctx); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rd, err := srv.Ready(ctx, maxLag)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		role := "follows"
		if rd.IsLeader {
			role = "leads"
		}
		fmt.Fprintf(w, "ready: member %d %s (leader %d), applied %d of %d chosen\n", srv.ID(), role, rd.Leader, rd.Applied, rd.Chosen)
	})
	addPprof(mux)
	return mux
}

func addPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// listenAdmin opens --listen-admin, if given; nil if not.
func listenAdmin(c *cli.Context) (net.Listener, error) {
	addr := c.String("listen-admin")
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen-admin: %w", err)
	}
	return ln, nil
}

// serveHTTP serves h on ln until the process ends.
func serveHTTP(ln net.Listener, h http.Handler, what string, logger *slog.Logger) {
	go func() {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		logger.Info("serving "+what, "addr", ln.Addr().String())
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn(what+" server stopped", "err", err)
		}
	}()
}
