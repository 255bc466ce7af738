package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/server"
)

// TestAdminEndpoints serves a member's admin handler and reads each
// endpoint as Prometheus, a load balancer and an operator would.
func TestAdminEndpoints(t *testing.T) {
	l, err := server.StartLocal(server.LocalConfig{Dir: t.TempDir(), Template: server.Config{TickInterval: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	ts := httptest.NewServer(adminHandler(l.Servers()[0], 1000))
	defer ts.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK && strings.HasPrefix(body, "ready: member 1 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{"paxosd_wal_sync_seconds_bucket", `paxosd_info{id="1"`, "paxosd_leader_id ", "go_goroutines "} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, no %q in it", code, want)
		}
	}
	if code, body := get("/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d", code)
	}
	if code, _ := get("/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d", code)
	}
}
