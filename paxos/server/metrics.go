package server

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/paxosd/paxosd/paxos"
)

// Metrics are a member's Prometheus metrics, in a registry of its own (a
// process may run several members: paxosd dev, tests). docs/operations.md
// lists them with their meaning; keep the two in step. A Member given
// Metrics (MemberConfig.Metrics) keeps them; the daemon also feeds them
// from its WAL, transport and client port.
type Metrics struct {
	reg *prometheus.Registry

	syncSeconds    prometheus.Histogram
	syncRecords    prometheus.Histogram
	syncBytes      prometheus.Histogram
	slowDisk       *prometheus.CounterVec
	commitSeconds  prometheus.Histogram
	requests       *prometheus.HistogramVec
	slotsInFlight  prometheus.Gauge
	leaderChanges  prometheus.Counter
	phase1Rounds   prometheus.Counter
	isLeader       prometheus.Gauge
	leader         prometheus.Gauge
	ballot         prometheus.Gauge
	promised       prometheus.Gauge
	chosen         prometheus.Gauge
	applied        prometheus.Gauge
	appliedSlots   prometheus.Counter
	lag            prometheus.Gauge
	sessions       prometheus.Gauge
	snapSends      prometheus.Counter
	snapSentBytes  prometheus.Counter
	snapInstalls   prometheus.Counter
	snapRecvBytes  prometheus.Counter
	rejected       *prometheus.CounterVec
	denied         prometheus.Counter
	diskFree       prometheus.Gauge
	diskFull       prometheus.Gauge
	diskFullEvents prometheus.Counter
	stallHandovers prometheus.Counter

	// The slots a leader sent Accepts for and when, until applied here.
	mu       sync.Mutex
	proposed map[paxos.Slot]time.Time
	// Kept by sample, on the node's goroutine.
	lastLeader  paxos.NodeID
	lastApplied paxos.Slot
	sampled     bool
	lastBallot  paxos.Ballot
}

// MetricsConfig says which member the metrics are of, and how to read the
// gauges that are read when scraped. Nil functions read as zero.
type MetricsConfig struct {
	ID      paxos.NodeID
	Version string
	// Conns returns the inbound peer connections and client connections
	// open now; LogBytes the bytes of the log store on disk.
	Conns    func() (peer, client int)
	LogBytes func() uint64
}

// maxTracked bounds the slots tracked from Accept to applied: a leader that
// never learns its slots' fate (cut off, no learner) forgets the oldest.
const maxTracked = 1 << 16

// latencyBuckets run from 100µs to about 26s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 19)

// NewMetrics makes a member's metrics and registers them, with the Go
// runtime's and the process's, in a new registry.
func NewMetrics(cfg MetricsConfig) *Metrics {
	conns := func() (float64, float64) {
		if cfg.Conns == nil {
			return 0, 0
		}
		p, c := cfg.Conns()
		return float64(p), float64(c)
	}
	logBytes := func() float64 {
		if cfg.LogBytes == nil {
			return 0
		}
		return float64(cfg.LogBytes())
	}
	reg := prometheus.NewRegistry()
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "paxosd", Name: name, Help: help}
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts(f(name, help)))
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts(f(name, help)))
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "paxosd", Name: name, Help: help, Buckets: buckets})
	}
	m := &Metrics{
		reg:            reg,
		proposed:       map[paxos.Slot]time.Time{},
		syncSeconds:    hist("wal_sync_seconds", "Duration of each synced WAL commit (the fsync every acknowledged write waits for).", latencyBuckets),
		syncRecords:    hist("wal_sync_records", "Records per synced WAL commit: how many writes one fsync carried (group commit).", prometheus.ExponentialBuckets(1, 2, 14)),
		syncBytes:      hist("wal_sync_bytes", "Bytes per synced WAL commit.", prometheus.ExponentialBuckets(64, 4, 12)),
		slowDisk:       prometheus.NewCounterVec(prometheus.CounterOpts(f("disk_slow_total", "Disk operations slower than the slow-disk threshold, by operation.")), []string{"op"}),
		commitSeconds:  hist("slot_commit_seconds", "At the leader, from the first Accept of a slot until its learner applied it (the slot was chosen and applied).", latencyBuckets),
		requests:       prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "paxosd", Name: "request_seconds", Help: "From a client request's arrival until its answer left, by request kind and outcome code.", Buckets: latencyBuckets}, []string{"kind", "code"}),
		slotsInFlight:  gauge("slots_in_flight", "Slots this leader sent Accepts for that its learner has not applied yet."),
		leaderChanges:  counter("leader_changes_total", "Times the leader this member knows of changed (including to none)."),
		phase1Rounds:   counter("phase1_rounds_total", "Phase-1 rounds (campaigns with a new ballot) this member's proposer started."),
		isLeader:       gauge("is_leader", "1 if this member's proposer leads, else 0."),
		leader:         gauge("leader_id", "Node ID of the leader this member knows of (0: none)."),
		ballot:         gauge("ballot_round", "Round of this member's proposer's ballot."),
		promised:       gauge("promised_round", "Round of the ballot this member's acceptor promised."),
		chosen:         gauge("chosen_slot", "Highest slot this member knows to be chosen."),
		applied:        gauge("applied_slot", "Highest slot this member's learner applied."),
		appliedSlots:   counter("applied_slots_total", "Slots this member's learner applied (rate() of it is the apply rate)."),
		lag:            gauge("learner_lag_slots", "Chosen minus applied slots at this member: how far its learner is behind."),
		sessions:       gauge("sessions", "Client sessions in this member's learner's table."),
		snapSends:      counter("snapshot_sends_total", "Snapshot transfers this member started sending to peers."),
		snapSentBytes:  counter("snapshot_sent_bytes_total", "Snapshot bytes this member sent to peers."),
		snapInstalls:   counter("snapshot_installs_total", "Snapshots this member received from a peer and installed."),
		snapRecvBytes:  counter("snapshot_received_bytes_total", "Snapshot bytes this member received from peers."),
		rejected:       prometheus.NewCounterVec(prometheus.CounterOpts(f("rejected_total", "Connections and frames refused, by port and reason.")), []string{"port", "reason"}),
		denied:         counter("permission_denied_total", "Client requests refused because the client's role does not allow them."),
		diskFree:       gauge("disk_free_bytes", "Bytes free on the data directory's file system, as last looked at (every 500ms)."),
		diskFull:       gauge("disk_full", "1 while this member counts its disk as full (free space below --disk-reserve, or a write refused with ENOSPC): it takes no writes."),
		diskFullEvents: counter("disk_full_total", "Times this member's disk filled up (went below the reserve, or refused a write with ENOSPC)."),
		stallHandovers: counter("disk_stall_handovers_total", "Times this member handed leadership over because an fsync took longer than --disk-stall."),
	}
	// NB: every series of the vectors from the start, at zero, so that a
	// dashboard or an alert on them sees 0 rather than nothing.
	for _, port := range []string{"peer", "client"} {
		for _, reason := range []string{"limit", "tls", "handshake", "frame"} {
			m.rejected.WithLabelValues(port, reason)
		}
	}
	for _, op := range []string{"sync", "syncdata", "syncto", "write"} {
		m.slowDisk.WithLabelValues(op)
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "paxosd", Name: "info", Help: "Always 1; the labels say which member and version this is.",
		ConstLabels: prometheus.Labels{"id": cfg.ID.String(), "version": cfg.Version}})
	info.Set(1)
	reg.MustRegister(m.syncSeconds, m.syncRecords, m.syncBytes, m.slowDisk, m.commitSeconds, m.requests, m.slotsInFlight,
		m.leaderChanges, m.phase1Rounds, m.isLeader, m.leader, m.ballot, m.promised, m.chosen, m.applied, m.appliedSlots,
		m.lag, m.sessions, m.snapSends, m.snapSentBytes, m.snapInstalls, m.snapRecvBytes, m.rejected, m.denied, info,
		m.diskFree, m.diskFull, m.diskFullEvents, m.stallHandovers,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(f("peer_connections", "Inbound peer connections open now.")), func() float64 { p, _ := conns(); return p }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(f("client_connections", "Client connections open now.")), func() float64 { _, c := conns(); return c }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(f("log_bytes", "Bytes the member's log store takes on disk.")), logBytes),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// sent notes the messages a member sends: a leader's Accepts start the
// clock of their slots (a leader's Accepts to its own acceptor skip the
// transport, so a cluster of one acceptor has no such clock), and snapshot
// chunks count as sent. Snapshot chunks are sent from the
// executor's goroutines, everything else from the node's.
func (m *Metrics) sent(msgs []paxos.Message, now time.Time) {
	for i := range msgs {
		msg := &msgs[i]
		switch msg.Type {
		case paxos.MsgAccept:
			m.mu.Lock()
			for _, e := range msg.Entries {
				m.track(e.Slot, now)
			}
			if msg.Slot != 0 && len(msg.Entries) == 0 {
				m.track(msg.Slot, now)
			}
			m.mu.Unlock()
		case paxos.MsgSnapshotChunk:
			if msg.Offset == 0 && msg.Size > 0 {
				m.snapSends.Inc()
			}
			m.snapSentBytes.Add(float64(len(msg.Value)))
		}
	}
}

// track starts the clock of slot, if it is not running; m.mu is held.
func (m *Metrics) track(slot paxos.Slot, now time.Time) {
	if _, ok := m.proposed[slot]; ok {
		return
	}
	if len(m.proposed) >= maxTracked {
		for s := range m.proposed {
			delete(m.proposed, s) // NB: any will do; a full map means slots whose fate this leader never learned
			break
		}
	}
	m.proposed[slot] = now
}

// decided stops the clocks of the slots ds applied.
func (m *Metrics) decided(ds []paxos.Decision, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range ds {
		if t, ok := m.proposed[d.Slot]; ok {
			m.commitSeconds.Observe(now.Sub(t).Seconds())
			delete(m.proposed, d.Slot)
		}
	}
}

// sample reads the member's state into the gauges; it runs on the node's
// goroutine.
func (m *Metrics) sample(mem *Member) {
	var leader paxos.NodeID
	var chosen paxos.Slot
	if p := mem.Proposer(); p != nil {
		leader, chosen = p.Leader(), p.Decided()
		if b := p.Ballot(); b != m.lastBallot {
			m.lastBallot = b // NB: a proposer takes a new ballot only to campaign
			m.phase1Rounds.Inc()
		}
		m.ballot.Set(float64(p.Ballot().Round))
		m.isLeader.Set(boolGauge(p.IsLeader()))
	}
	if a := mem.Acceptor(); a != nil {
		m.promised.Set(float64(a.Promised().Round))
	}
	if l := mem.Learner(); l != nil {
		chosen = max(chosen, l.Known())
		applied := l.Applied()
		m.applied.Set(float64(applied))
		if applied > m.lastApplied && m.sampled {
			m.appliedSlots.Add(float64(applied - m.lastApplied))
		}
		m.lastApplied, m.sampled = applied, true
		m.lag.Set(float64(chosen - min(chosen, applied)))
		m.sessions.Set(float64(l.Sessions()))
	}
	m.chosen.Set(float64(chosen))
	if leader != m.lastLeader {
		m.leaderChanges.Inc()
		m.lastLeader = leader
	}
	m.leader.Set(float64(leader))
	m.mu.Lock()
	if p := mem.Proposer(); p == nil || !p.IsLeader() {
		clear(m.proposed) // a deposed leader learns its slots' fate as any member
	}
	m.slotsInFlight.Set(float64(len(m.proposed)))
	m.mu.Unlock()
}

// Registry returns the registry the metrics are in, for an HTTP handler
// (promhttp.HandlerFor) or a test to gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Synced is the WAL's wal.Options.Synced.
func (m *Metrics) Synced(took time.Duration, records, bytes int) {
	m.syncSeconds.Observe(took.Seconds())
	m.syncRecords.Observe(float64(records))
	m.syncBytes.Observe(float64(bytes))
}

// SlowDisk is the WAL's wal.Options.SlowDisk.
func (m *Metrics) SlowDisk(op string, _ time.Duration) { m.slowDisk.WithLabelValues(op).Inc() }

// Rejected counts a connection or frame refused on port ("peer" or
// "client") for reason.
func (m *Metrics) Rejected(port, reason string) { m.rejected.WithLabelValues(port, reason).Inc() }

// meteredTransport is a member's transport with its messages counted.
type meteredTransport struct {
	paxos.Transport
	m   *Metrics
	now func() time.Time
}

func (t meteredTransport) Send(msgs []paxos.Message) {
	t.m.sent(msgs, t.now())
	t.Transport.Send(msgs)
}

// Reconfigure passes the configurations on to a transport that follows
// them.
func (t meteredTransport) Reconfigure(h paxos.History) {
	if r, ok := t.Transport.(paxos.Reconfigurable); ok {
		r.Reconfigure(h)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
