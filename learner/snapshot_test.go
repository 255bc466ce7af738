package learner

import (
	"bytes"
	"io"
	"reflect"
	"slices"
	"testing"

	"github.com/paxosd/paxosd/paxos"
)

func takeReady(l *Learner) paxos.Ready {
	rd := l.Ready()
	l.Advance()
	return rd
}

func stepOK(t *testing.T, l *Learner, m paxos.Message) paxos.Ready {
	t.Helper()
	m.To = 1
	if err := l.Step(m); err != nil {
		t.Fatalf("Step(%v): %v", m, err)
	}
	return takeReady(l)
}

func msgsOf(rd paxos.Ready, typ paxos.MsgType) []paxos.Message {
	var out []paxos.Message
	for _, m := range rd.Messages {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// A learner snapshots every SnapshotEvery slots; once the driver reports the
// snapshot durable it drops its log below LogRetain, records the base, tells
// the acceptors, and answers catch-up below its log with an offer.
func TestSnapshotAndTruncate(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, func(c *Config) { c.SnapshotEvery, c.LogRetain = 4, 1 })
	rd := decide(t, l, entry(1, put(0, 0, "a", "1")), entry(2, put(0, 0, "b", "2")), entry(3, put(0, 0, "c", "3")))
	if rd.Snapshot != nil {
		t.Fatal("snapshot taken before SnapshotEvery slots")
	}
	rd = decide(t, l, entry(4, put(0, 0, "d", "4")), entry(5, put(0, 0, "e", "5")))
	if rd.Snapshot == nil || rd.Snapshot.Meta.Slot != 4 {
		t.Fatalf("snapshot job %+v, want one at slot 4", rd.Snapshot)
	}
	// The job writes the state as of slot 4, although slot 5 was applied
	// after it was captured.
	var job, at4 bytes.Buffer
	if err := rd.Snapshot.Write(&job); err != nil {
		t.Fatal(err)
	}
	ref := newTestLearner(t, paxos.LearnerState{}, nil)
	decide(t, ref, entry(1, put(0, 0, "a", "1")), entry(2, put(0, 0, "b", "2")), entry(3, put(0, 0, "c", "3")), entry(4, put(0, 0, "d", "4")))
	if err := ref.Snapshot(&at4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(job.Bytes(), at4.Bytes()) || rd.Snapshot.Meta.Hash != ref.Hash() {
		t.Fatal("the snapshot job does not hold the state and hash of slot 4")
	}
	// Until it is durable nothing is dropped, and no second job starts.
	rd = decide(t, l, entry(6), entry(7), entry(8), entry(9))
	if rd.Snapshot != nil || l.LogLen() != 9 {
		t.Fatalf("second job %v or log of %d while the first is being written", rd.Snapshot, l.LogLen())
	}
	rd = stepOK(t, l, paxos.Message{Type: paxos.MsgSnapshotSaved, From: 1, Slot: 4})
	if l.SnapshotSlot() != 4 || l.LogLen() != 6 {
		t.Fatalf("after the save: snapshot %d, log of %d; want 4 and 6 (slots 4..9)", l.SnapshotSlot(), l.LogLen())
	}
	if !reflect.DeepEqual(rd.Writes, []paxos.Record{{Type: paxos.RecSnapshot, Slot: 4}}) {
		t.Fatalf("writes %v, want Snapshot 4", rd.Writes)
	}
	if got := msgsOf(rd, paxos.MsgSnapshotted); len(got) != 3 || got[0].Slot != 4 {
		t.Fatalf("reports %v, want one Snapshotted 4 per acceptor", got)
	}
	rd = stepOK(t, l, paxos.Message{Type: paxos.MsgCatchUp, From: 2, Slot: 3})
	if m := rd.Messages[0]; m.Type != paxos.MsgSnapshotOffer || m.Slot != 4 || m.Commit != 9 {
		t.Fatalf("catch-up below the log answered with %v, want an offer of snapshot 4", m)
	}
	rd = stepOK(t, l, paxos.Message{Type: paxos.MsgCatchUp, From: 2, Slot: 4})
	if m := rd.Messages[0]; m.Type != paxos.MsgCatchUpReply || m.Entries[0].Slot != 4 {
		t.Fatalf("catch-up in the retained log answered with %v", m)
	}
	// A failed save lets the next one start.
	decide(t, l, entry(10), entry(11), entry(12), entry(13))
	stepOK(t, l, paxos.Message{Type: paxos.MsgSnapshotSaved, From: 1, Slot: 0})
	if rd := decide(t, l, entry(14)); rd.Snapshot == nil || rd.Snapshot.Meta.Slot != 14 {
		t.Fatalf("no new snapshot job after a failed save: %+v", rd.Snapshot)
	}
	// An operator's snapshot while one is written: a second job follows
	// as soon as the first is durable, covering the slot asked at or more.
	decide(t, l, entry(15), entry(16))
	if got := l.TakeSnapshot(); got != 16 {
		t.Fatalf("TakeSnapshot = %d, want the applied slot 16", got)
	}
	if rd := takeReady(l); rd.Snapshot != nil {
		t.Fatal("a second job started while one is written")
	}
	decide(t, l, entry(17))
	rd = stepOK(t, l, paxos.Message{Type: paxos.MsgSnapshotSaved, From: 1, Slot: 14})
	if rd.Snapshot == nil || rd.Snapshot.Meta.Slot != 17 || l.SnapshotSlot() != 14 {
		t.Fatalf("after the first save: job %+v, snapshot %d; want a job at 17 and snapshot 14", rd.Snapshot, l.SnapshotSlot())
	}
	if got := l.TakeSnapshot(); got != 17 {
		t.Fatalf("TakeSnapshot while the requested one is written = %d, want 17", got)
	}
	if rd := takeReady(l); rd.Snapshot != nil {
		t.Fatal("a job started although the one being written covers the applied slot")
	}
}

// chunkMsg is a chunk of data from peer at offset.
func chunkMsg(peer paxos.NodeID, slot paxos.Slot, data []byte, off, size int) paxos.Message {
	v := data[off : off+size]
	return paxos.Message{Type: paxos.MsgSnapshotChunk, From: peer, Slot: slot, Offset: uint64(off), Size: uint64(len(data)), Value: v, Sum: paxos.ChunkSum(v)}
}

// A lagging learner pulls a peer's snapshot chunk by chunk, checks each,
// asks again after a timeout from where it stands, restores the snapshot
// and goes on from the log.
func TestReceiveSnapshot(t *testing.T) {
	src := newTestLearner(t, paxos.LearnerState{}, nil)
	decide(t, src, entry(1, put(0, 0, "a", "1")), entry(2, put(0, 0, "b", "2")), entry(3, put(0, 0, "c", "3")))
	var state bytes.Buffer
	if err := src.Snapshot(&state); err != nil {
		t.Fatal(err)
	}
	data := state.Bytes()
	l := newTestLearner(t, paxos.LearnerState{}, func(c *Config) { c.SnapshotTimeoutTicks = 2 })
	decide(t, l, entry(5, put(0, 0, "e", "5")))
	rd := stepOK(t, l, paxos.Message{Type: paxos.MsgSnapshotOffer, From: 2, Slot: 3, Commit: 5})
	if m := msgsOf(rd, paxos.MsgSnapshotPull); len(m) != 1 || m[0].To != 2 || m[0].Slot != 3 || m[0].Offset != 0 {
		t.Fatalf("offer answered with %v, want a pull of snapshot 3 from 0", rd.Messages)
	}
	// One transfer at a time: a second offer is ignored.
	if rd := stepOK(t, l, paxos.Message{Type: paxos.MsgSnapshotOffer, From: 3, Slot: 4}); len(rd.Messages) != 0 {
		t.Fatalf("second offer started another transfer: %v", rd.Messages)
	}
	rd = stepOK(t, l, chunkMsg(2, 3, data, 0, 10))
	if len(rd.Chunks) != 1 || rd.Chunks[0].Offset != 0 || len(rd.Chunks[0].Data) != 10 {
		t.Fatalf("chunk not handed to the driver: %+v", rd.Chunks)
	}
	if m := msgsOf(rd, paxos.MsgSnapshotPull); len(m) != 1 || m[0].Offset != 10 {
		t.Fatalf("next pull %v, want offset 10", rd.Messages)
	}
	bad := chunkMsg(2, 3, data, 10, 10)
	bad.Sum++
	if err := l.Step(bad); err == nil {
		t.Fatal("a chunk failing its checksum was taken")
	}
	// Lost: after the timeout the pull is repeated from offset 10.
	var pulls []paxos.Message
	for range 3 {
		l.Tick()
		pulls = append(pulls, msgsOf(takeReady(l), paxos.MsgSnapshotPull)...)
	}
	if len(pulls) != 1 || pulls[0].Offset != 10 {
		t.Fatalf("pulls after a lost chunk: %v, want one from offset 10", pulls)
	}
	rd = stepOK(t, l, chunkMsg(2, 3, data, 10, len(data)-10))
	if rd.Install != 3 {
		t.Fatalf("last chunk did not ask for an install: %+v", rd)
	}
	if err := l.RestoreSnapshot(paxos.SnapshotMeta{Slot: 3, Hash: src.Hash()}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rd = takeReady(l)
	// Slot 4 is still missing, so slot 5 waits.
	if l.Applied() != 3 || l.Hash() != src.Hash() || l.SnapshotSlot() != 3 {
		t.Fatalf("after install: applied %d hash %x snapshot %d", l.Applied(), l.Hash(), l.SnapshotSlot())
	}
	if !reflect.DeepEqual(rd.Writes, []paxos.Record{{Type: paxos.RecSnapshot, Slot: 3}, {Type: paxos.RecApplied, Slot: 3}}) {
		t.Fatalf("install wrote %v", rd.Writes)
	}
	rd = decide(t, l, entry(4, put(0, 0, "d", "4")))
	if !slices.Equal(slotsOf(rd.Decided), []paxos.Slot{4, 5}) {
		t.Fatalf("after install, slots %v applied, want 4 and 5", slotsOf(rd.Decided))
	}
}

// A transfer whose peer stays silent is given up after maxPullRetries, with
// a back-off before the next.
func TestTransferGivesUp(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, func(c *Config) { c.SnapshotTimeoutTicks = 1 })
	decide(t, l, entry(9))
	stepOK(t, l, paxos.Message{Type: paxos.MsgSnapshotOffer, From: 2, Slot: 5})
	pulls := 0
	for range 200 {
		l.Tick()
		pulls += len(msgsOf(takeReady(l), paxos.MsgSnapshotPull))
	}
	if pulls != maxPullRetries {
		t.Fatalf("%d repeated pulls, want %d", pulls, maxPullRetries)
	}
	if l.backoff == 0 && l.xfer != nil {
		t.Fatal("transfer still running")
	}
	l.backoff = 5
	if rd := stepOK(t, l, paxos.Message{Type: paxos.MsgSnapshotOffer, From: 3, Slot: 5}); len(rd.Messages) != 0 {
		t.Fatal("a transfer started during the back-off")
	}
}

// A restart restores the newest snapshot, then replays the log after it.
func TestRestartFromSnapshot(t *testing.T) {
	entries := []paxos.Entry{entry(1, put(0, 0, "a", "1")), entry(2, put(0, 0, "b", "2")), entry(3, put(0, 0, "c", "3"))}
	live := newTestLearner(t, paxos.LearnerState{}, nil)
	decide(t, live, entries[:2]...)
	var snap bytes.Buffer
	if err := live.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	meta := paxos.SnapshotMeta{Slot: 2, Hash: live.Hash()}
	decide(t, live, entries[2])
	r := newTestLearner(t, paxos.LearnerState{Base: 2, Chosen: entries[2:], Applied: 3, Snapshot: meta, SnapshotData: bytes.NewReader(snap.Bytes())}, nil)
	if r.Applied() != 3 || r.Hash() != live.Hash() || r.SnapshotSlot() != 2 {
		t.Fatalf("restarted at %d hash %x; want 3 and %x", r.Applied(), r.Hash(), live.Hash())
	}
	if rd := r.Ready(); len(rd.Writes) != 0 {
		t.Fatalf("a restart from the recorded snapshot wrote %v", rd.Writes)
	}
	// A snapshot newer than the recorded base (a crash came between the
	// two) is recorded at once, with the applied slot, before anything
	// else is applied: the log below it may have gaps.
	r = newTestLearner(t, paxos.LearnerState{Base: 0, Chosen: entries[2:], Applied: 0, Snapshot: meta, SnapshotData: bytes.NewReader(snap.Bytes())}, nil)
	if rd := r.Ready(); !reflect.DeepEqual(rd.Writes, []paxos.Record{{Type: paxos.RecSnapshot, Slot: 2}, {Type: paxos.RecApplied, Slot: 3}}) {
		t.Fatalf("restart from a snapshot newer than the base wrote %v, want Snapshot 2 and Applied 3", rd.Writes)
	}
	if _, err := New(Config{ID: 1, Proposer: true, Machine: live.sessions.Machine(), Rand: live.cfg.Rand},
		paxos.LearnerState{Configs: testConfigs, Base: 2, Chosen: entries[2:], Applied: 3}); err == nil {
		t.Fatal("started with a truncated log and no snapshot")
	}
	if _, err := New(Config{ID: 1, Proposer: true, Machine: live.sessions.Machine(), Rand: live.cfg.Rand},
		paxos.LearnerState{Configs: testConfigs, Snapshot: meta, SnapshotData: io.LimitReader(bytes.NewReader(snap.Bytes()), 5)}); err == nil {
		t.Fatal("started from a cut-off snapshot")
	}
}
