package server

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/paxosd/paxosd/paxos"
)

// metricValue gathers s's metrics and returns the value of the one named
// (a counter's or gauge's value, a histogram's count) whose labels include
// labels, summed over the series that match; 0 if there is none.
func metricValue(t *testing.T, s *Server, name string, labels ...string) float64 {
	t.Helper()
	s.SampleMetrics(context.Background())
	fams, err := s.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
		return sum
	}
	return 0 // NB: a vector with no series yet is not gathered
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// TestMetricsFollowTheCluster writes through a local cluster and checks
// that each metric the operations guide lists moves as it says.
func TestMetricsFollowTheCluster(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx := context.Background()
	for i := range 50 {
		if err := c.Put(ctx, "k"+string(rune('a'+i%26)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	leader := l.servers[leaderOf(t, c, l)]
	applied := waitConverged(t, c, l)
	for _, s := range l.Servers() {
		if got := metricValue(t, s, "paxosd_applied_slot"); got != float64(applied) {
			t.Errorf("member %d: applied_slot %v, want %d", s.ID(), got, applied)
		}
		if got := metricValue(t, s, "paxosd_learner_lag_slots"); got != 0 {
			t.Errorf("member %d: learner_lag_slots %v after converging", s.ID(), got)
		}
		if metricValue(t, s, "paxosd_wal_sync_seconds") == 0 || metricValue(t, s, "paxosd_wal_sync_records") == 0 {
			t.Errorf("member %d: no synced WAL commits counted", s.ID())
		}
		if got := metricValue(t, s, "paxosd_leader_id"); got != float64(leader.ID()) {
			t.Errorf("member %d: leader_id %v, want %d", s.ID(), got, leader.ID())
		}
		if metricValue(t, s, "paxosd_leader_changes_total") < 1 {
			t.Errorf("member %d: no leader change counted", s.ID())
		}
		if metricValue(t, s, "paxosd_peer_connections") < 1 {
			t.Errorf("member %d: no peer connection counted", s.ID())
		}
	}
	for _, name := range []string{"paxosd_is_leader", "paxosd_phase1_rounds_total"} {
		if got := metricValue(t, leader, name); got < 1 {
			t.Errorf("leader: %s %v", name, got)
		}
	}
	if got := metricValue(t, leader, "paxosd_slot_commit_seconds"); got < 50 {
		t.Errorf("leader: slot_commit_seconds counted %v slots, want at least the 50 puts'", got)
	}
	if got := metricValue(t, leader, "paxosd_request_seconds", "kind", "command", "code", "ok"); got < 50 {
		t.Errorf("leader: request_seconds counted %v answered commands, want 50", got)
	}
	if got := metricValue(t, leader, "paxosd_slots_in_flight"); got != 0 {
		t.Errorf("leader: %v slots in flight when idle", got)
	}
	// A stranger on the client port is counted by reason.
	conn, err := net.Dial("tcp", l.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{0, 0, 0, 3, 0xc1, 0xc1, 0xc1})
	conn.Close()
	s1 := l.servers[1]
	waitFor(t, "the refusal counted", func() bool {
		return metricValue(t, s1, "paxosd_rejected_total", "port", "client", "reason", "handshake") == 1
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHealthAndReadiness checks /healthz's and /readyz's answers as a
// cluster loses its quorum and gets it back.
func TestHealthAndReadiness(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx := context.Background()
	if err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, l)
	for _, s := range l.Servers() {
		if err := s.Health(ctx); err != nil {
			t.Errorf("member %d unhealthy: %v", s.ID(), err)
		}
		if _, err := s.Ready(ctx, 10); err != nil {
			t.Errorf("member %d not ready: %v", s.ID(), err)
		}
	}
	leader := leaderOf(t, c, l)
	var others []paxos.NodeID
	for _, s := range l.Servers() {
		if s.ID() != leader {
			others = append(others, s.ID())
		}
	}
	for _, id := range others {
		if err := l.StopMember(id); err != nil {
			t.Fatal(err)
		}
	}
	lone := l.servers[leader]
	waitFor(t, "the lone member to be not ready", func() bool {
		_, err := lone.Ready(ctx, 10)
		return errors.Is(err, ErrNotReady)
	})
	_, err := lone.Ready(ctx, 10)
	t.Logf("alone: %v", err)
	if err := lone.Health(ctx); err != nil {
		t.Errorf("a member without a quorum is still healthy (it runs), but: %v", err)
	}
	for _, id := range others {
		if err := l.StartMember(id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every member ready again", func() bool {
		for _, s := range l.Servers() {
			if _, err := s.Ready(ctx, 10); err != nil {
				return false
			}
		}
		return true
	})
	if err := l.StopMember(leader); err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if s := lone; s.Health(stopped) == nil {
		t.Error("a stopped member says it is healthy")
	}
	if !strings.Contains(errString(lone.Health(stopped)), "not running") {
		t.Errorf("a stopped member's health: %v", lone.Health(stopped))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
