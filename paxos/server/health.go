package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/paxosd/paxosd/paxos"
)

// onNode runs f on the node's goroutine and waits until it ran, or ctx is
// done. The error says which of the two failed: the node is not running,
// or it did not get to f in time.
func (s *Server) onNode(ctx context.Context, f func()) error {
	done := make(chan struct{})
	if err := s.node.Do(ctx, func() { f(); close(done) }); err != nil {
		return fmt.Errorf("the member's node is not running: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the member's node did not answer: %w", ctx.Err())
	}
}

// Health reports whether the member works: its node runs (a storage failure
// stops it for good) and its store answers a read. It is what /healthz
// tells an orchestrator, which restarts a member that is not healthy.
func (s *Server) Health(ctx context.Context) error {
	if s.disk.enospc.Load() {
		// NB: the node waits inside a write for disk space; a restart
		// would not bring space back. Alive, and not ready (Ready).
		return nil
	}
	var err error
	if nerr := s.onNode(ctx, func() { err = s.store.Check() }); nerr != nil {
		return nerr
	}
	if err != nil {
		return fmt.Errorf("the store does not answer: %w", err)
	}
	return nil
}

// SampleMetrics brings the member's metrics up to date, for a scrape; the
// member also samples them ten times a second by itself.
func (s *Server) SampleMetrics(ctx context.Context) {
	_ = s.onNode(ctx, s.member.SampleMetrics) // NB: a member too busy is scraped as last sampled
}

// Readiness is what Ready found, for /readyz.
type Readiness struct {
	Leader   paxos.NodeID
	IsLeader bool
	Chosen   paxos.Slot
	Applied  paxos.Slot
}

// ErrNotReady is wrapped by Ready's errors.
var ErrNotReady = errors.New("not ready")

// Ready reports whether the member should get client traffic: it knows a
// leader (and, if it is the leader, a quorum of acceptors hears it), and
// its learner has applied all but at most maxLag of the slots it knows to
// be chosen. Load balancers and Kubernetes readiness probes use it.
func (s *Server) Ready(ctx context.Context, maxLag uint64) (Readiness, error) {
	var r Readiness
	if s.disk.enospc.Load() {
		return r, fmt.Errorf("%w: the disk is full: a write was refused with ENOSPC, and the member waits for space", ErrNotReady)
	}
	var err error
	if nerr := s.onNode(ctx, func() { r, err = s.member.readiness(maxLag) }); nerr != nil {
		// NB: not r: the node may still write it, later.
		return Readiness{}, fmt.Errorf("%w: %w", ErrNotReady, nerr)
	}
	return r, err
}

// readiness is Ready on the node's goroutine.
func (m *Member) readiness(maxLag uint64) (Readiness, error) {
	var r Readiness
	if m.prop != nil {
		r.Leader, r.IsLeader, r.Chosen = m.prop.Leader(), m.prop.IsLeader(), m.prop.Decided()
	}
	if m.lrn != nil {
		r.Chosen, r.Applied = max(r.Chosen, m.lrn.Known()), m.lrn.Applied()
	}
	switch {
	case m.diskFull != "":
		return r, fmt.Errorf("%w: the disk is full (%s); the member takes no writes until space is freed", ErrNotReady, m.diskFull)
	case r.Leader == 0:
		return r, fmt.Errorf("%w: no leader is known (an election is under way, or this member is cut off)", ErrNotReady)
	case r.IsLeader && !m.prop.Configs()[0].Membership().IsQuorum(m.prop.Reachable()):
		return r, fmt.Errorf("%w: this member leads, but has not heard from a quorum of acceptors lately", ErrNotReady)
	case m.lrn != nil && uint64(r.Chosen-min(r.Chosen, r.Applied)) > maxLag:
		return r, fmt.Errorf("%w: the learner applied slot %d of %d chosen, more than %d behind", ErrNotReady, r.Applied, r.Chosen, maxLag)
	}
	return r, nil
}
