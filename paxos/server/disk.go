package server

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos/clientapi"
)

// A member whose disk is full (docs/operations.md, "Disk trouble") stops
// writing before the disk refuses it: it hands leadership over if it has
// it, pauses its node (no ticks, no messages: to its peers it is cut off,
// and its cores make no new records), refuses writes and linearizable
// reads, and keeps serving what it has: serializable reads, watches,
// status. Once space is freed it resumes and catches up. The daemon
// decides when the disk is full (Server's disk watch); the simulator
// fills disks at random, and checks that a full member writes nothing.

// SetDiskFull says whether the member's disk is full: why, or "" once it
// has room again. It runs on the node's goroutine.
func (m *Member) SetDiskFull(why string) {
	switch {
	case why != "" && m.diskFull == "":
		if m.prop != nil && m.prop.IsLeader() {
			if to := m.prop.HandOver(); to != 0 {
				m.logger.Warn("disk full: handing leadership over", "to", to)
			}
		}
		if m.prop != nil {
			// NB: after the hand-over's TimeoutNow is queued: a paused
			// member must not go on claiming to lead.
			m.prop.StepDown()
		}
		m.node.Pause(true)
		m.logger.Error("disk full: this member takes no writes and serves reads of what it has until space is freed", "why", why)
	case why == "" && m.diskFull != "":
		m.node.Pause(false)
		m.logger.Info("disk has room again: this member resumes and catches up")
	}
	m.diskFull = why
}

// DiskFull reports whether the member counts its disk as full.
func (s *Server) DiskFull() bool { return s.disk.full.Load() }

// DiskFull returns why the member's disk is full, "" if it is not.
func (m *Member) DiskFull() string { return m.diskFull }

// servedWhileFull reports whether a member whose disk is full still serves
// requests of kind k: those that read what it has and write nothing.
func servedWhileFull(k clientapi.RequestKind) bool {
	switch k {
	case clientapi.ReqStatus, clientapi.ReqQuery, clientapi.ReqWatch:
		return true
	}
	return false
}

// fullMessage tells a client why a member with a full disk refused its
// request.
func (m *Member) fullMessage(k clientapi.RequestKind) string {
	return fmt.Sprintf("node %d's disk is full (%s): it takes no %s requests until space is freed; other members do, and it still serves serializable reads", m.cfg.ID, m.diskFull, k)
}

// diskState is what the daemon knows of its disk.
type diskState struct {
	// enospc is set while a write refused with ENOSPC waits for room
	// (waitForSpace), told while the member was last told its disk is
	// full, and full while either is: what DiskFull and the metrics say.
	enospc atomic.Bool
	told   atomic.Bool
	full   atomic.Bool
	// pending is set while the member has yet to hear of a change.
	pending atomic.Bool
	// lastStall is when the last stall made a leader hand over (unix ns).
	lastStall atomic.Int64
}

// diskPoll is how often the daemon looks at its free space.
const diskPoll = 500 * time.Millisecond

// whyENOSPC is why the disk is full when a write was refused.
const whyENOSPC = "a write was refused with ENOSPC"

// watchDisk looks at the free space every diskPoll and tells the member
// when its disk fills up (free space below the reserve, or a write refused
// with ENOSPC) and when it has room again (a quarter more than the reserve
// free). The member hears of it on its node's goroutine, which may be held
// in a write waiting for space; DiskFull and the metrics say so at once.
func (s *Server) watchDisk(ctx context.Context) {
	t := time.NewTicker(diskPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		told := s.disk.told.Load()
		why, ok := s.diskReason(told)
		if !ok || (why != "") == told || s.disk.pending.Load() {
			continue
		}
		s.disk.pending.Store(true)
		if s.node.Do(ctx, func() {
			defer s.disk.pending.Store(false)
			// NB: looked at again, against what the member itself says:
			// the disk may have changed while this waited for the node.
			was := s.member.DiskFull() != ""
			why, ok := s.diskReason(was)
			if !ok || (why != "") == was {
				return
			}
			s.member.SetDiskFull(why)
			s.disk.told.Store(why != "")
			s.updateFull()
		}) != nil {
			return
		}
	}
}

// diskReason looks at the free space and says why the disk is full, "" if
// it is not; ok is false when it cannot tell (the free space does not read,
// or it is between the reserve and a quarter more, where a full disk stays
// full and one with room stays so, so that the member does not flap).
func (s *Server) diskReason(full bool) (why string, ok bool) {
	if s.disk.enospc.Load() {
		return whyENOSPC, true
	}
	avail, err := s.freeSpace()
	if err != nil {
		s.logger.Warn("cannot read the data directory's free space", "dir", s.cfg.DataDir, "err", err)
		return "", false
	}
	s.metrics.diskFree.Set(float64(avail))
	reserve := max(s.cfg.DiskReserve, 0)
	switch {
	case int64(avail) < reserve:
		return fmt.Sprintf("%s free in %s, below the reserve of %s", sizeString(avail), s.cfg.DataDir, sizeString(uint64(reserve))), true
	case full && int64(avail) < reserve+reserve/4:
		return "", false
	}
	return "", true
}

// updateFull sets what DiskFull and the metrics say: full while the member
// was told so, or a write waits for space.
func (s *Server) updateFull() {
	full := s.disk.told.Load() || s.disk.enospc.Load()
	if full && !s.disk.full.Swap(true) {
		s.metrics.diskFullEvents.Inc()
	}
	if !full {
		s.disk.full.Store(false)
	}
	s.metrics.diskFull.Set(boolGauge(full))
}

// freeSpace returns the bytes free for the member's data.
func (s *Server) freeSpace() (uint64, error) {
	u, err := s.cfg.FS.GetDiskUsage(s.cfg.DataDir)
	if err != nil {
		return 0, err
	}
	return u.AvailBytes, nil
}

// waitForSpace is the WAL's wal.Options.DiskFull: a write was refused with
// ENOSPC although the disk watch saw room (something else filled the disk
// at once). Every write waits here, the node's too, until there is room
// again: the reserve free, and a probe file written and synced. Nothing is
// lost: no write was acknowledged, and the one refused is tried again.
func (s *Server) waitForSpace() {
	s.disk.enospc.Store(true)
	s.updateFull()
	defer s.updateFull()
	defer s.disk.enospc.Store(false)
	s.logger.Error("disk full: a write was refused with ENOSPC; the member waits until space is freed", "dir", s.cfg.DataDir)
	start := time.Now()
	for {
		avail, err := s.freeSpace()
		if err == nil && int64(avail) >= max(s.cfg.DiskReserve, 0) && s.probeSpace() == nil {
			s.logger.Info("disk has room again: the refused write is tried again", "waited", time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-time.After(diskPoll):
		case <-s.ctx.Done():
			return // NB: the write fails, the store with it; the member is stopping anyway
		}
	}
}

// probeSpace writes and syncs a small file beside the data, and removes it.
func (s *Server) probeSpace() error {
	name := s.cfg.FS.PathJoin(s.cfg.DataDir, "space-probe.tmp")
	f, err := s.cfg.FS.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 64<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := s.cfg.FS.Remove(name); err == nil {
		err = rerr
	}
	return err
}

// synced is the WAL's wal.Options.Synced.
func (s *Server) synced(took time.Duration, records, bytes int) {
	s.metrics.Synced(took, records, bytes)
	s.stalled(took)
}

// slowDisk is the WAL's wal.Options.SlowDisk: Pebble's health checker saw
// an operation run longer than DiskStall, possibly one still running. Only
// a sync can make a leader hand over: the checker times compactions'
// writes too, which no client waits for.
func (s *Server) slowDisk(op string, took time.Duration) {
	s.metrics.SlowDisk(op, took)
	if strings.HasPrefix(op, "sync") {
		s.stalled(took)
	}
}

// stallEvery is the least time between two hand-overs for a stalling disk.
const stallEvery = 5 * time.Second

// stalled hands leadership over, if this member leads, when an fsync took
// longer than DiskStall: a leader whose disk stalls holds every write up.
func (s *Server) stalled(took time.Duration) {
	if s.cfg.DiskStall <= 0 || took < s.cfg.DiskStall || s.disk.enospc.Load() || s.disk.full.Load() {
		return // NB: a write waiting for space is slow because the disk is full, not stalling
	}
	now := time.Now().UnixNano()
	last := s.disk.lastStall.Load()
	if now-last < int64(stallEvery) || !s.disk.lastStall.CompareAndSwap(last, now) {
		return
	}
	go func() {
		// NB: not on the caller's goroutine, which may be the node's,
		// inside the slow sync.
		_ = s.node.Do(context.Background(), func() {
			p := s.member.Proposer()
			if p == nil || !p.IsLeader() {
				return
			}
			if to := p.HandOver(); to != 0 {
				s.metrics.stallHandovers.Inc()
				s.logger.Warn("disk stalls: handing leadership over", "took", took.Round(time.Millisecond), "limit", s.cfg.DiskStall, "to", to)
			}
		})
	}()
}

// sizeString writes a byte count in the largest binary unit that keeps it
// at least 1.
func sizeString(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
