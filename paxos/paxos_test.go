package paxos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBallotOrder(t *testing.T) {
	bs := []Ballot{{0, 0}, {1, 1}, {1, 3}, {2, 1}, {10, 2}}
	for i := range bs {
		for j := range bs {
			if got, want := bs[i].Less(bs[j]), i < j; got != want {
				t.Errorf("%v.Less(%v) = %v, want %v", bs[i], bs[j], got, want)
			}
		}
	}
	if s := (Ballot{Round: 7, Node: 2}).String(); s != "7.2" {
		t.Fatalf("Ballot{7, 2} prints as %q, want 7.2", s)
	}
	if (Ballot{1, 1}).Max(Ballot{0, 9}) != (Ballot{1, 1}) {
		t.Fatal("Max picked the lower ballot")
	}
}

func TestBatchRoundTrip(t *testing.T) {
	for _, cmds := range [][]Command{
		nil,
		{{Session: 1, Seq: 2, Data: []byte("x")}},
		{{Data: nil}, {Session: 1 << 60, Seq: 1 << 40, Data: bytes.Repeat([]byte("y"), 300)}},
	} {
		v := EncodeBatch(cmds)
		if v.IsNoop() != (len(cmds) == 0) {
			t.Fatalf("EncodeBatch(%d commands).IsNoop() = %v", len(cmds), v.IsNoop())
		}
		got, err := DecodeBatch(v)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(cmds) {
			t.Fatalf("decoded %d commands, want %d", len(got), len(cmds))
		}
		for i := range got {
			if got[i].Session != cmds[i].Session || got[i].Seq != cmds[i].Seq || !bytes.Equal(got[i].Data, cmds[i].Data) {
				t.Fatalf("command %d: got %+v, want %+v", i, got[i], cmds[i])
			}
		}
	}
	for _, bad := range []Value{{0x02}, {batchTag}, {batchTag, 0}, {batchTag, 1, 0, 0, 5, 'a'}, {batchTag, 1, 0, 0, 0, 9}, {batchTag, 0x80, 0x00}} {
		if _, err := DecodeBatch(bad); !errors.Is(err, ErrBadValue) {
			t.Errorf("DecodeBatch(%x): %v, want ErrBadValue", bad, err)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(EncodeBatch([]Command{{Session: 1, Seq: 1, Data: []byte("put a 1")}})))
	f.Add([]byte(EncodeBatch([]Command{{Data: []byte("a")}, {Session: 9, Seq: 300, Data: nil}})))
	f.Add([]byte{batchTag, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte(EncodeBatchAt(1767225600000, []Command{{Kind: CmdOpenSession, Seq: 4, Data: []byte{0xe8, 0x07}}, {Session: 3, Seq: 1, Data: []byte("x")}})))
	f.Add([]byte{timedBatchTag, 0x01, 0x01, 0x07, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, ms, err := DecodeBatchAt(data)
		if err != nil {
			return
		}
		// The decoder never declares more commands than bytes allow, and
		// accepts one encoding per batch.
		if len(cmds) > len(data) {
			t.Fatalf("%d commands from %d bytes", len(cmds), len(data))
		}
		again := EncodeBatch(cmds)
		if len(data) > 0 && data[0] == timedBatchTag {
			again = EncodeBatchAt(ms, cmds)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("DecodeBatchAt(%x) re-encodes as %x", data, again)
		}
	})
}

func TestMembership(t *testing.T) {
	c := MustMembership(
		Member{ID: 3, Roles: RoleAcceptor},
		Member{ID: 1, Roles: RoleAll},
		Member{ID: 2, Roles: RoleAcceptor | RoleLearner},
		Member{ID: 5, Roles: RoleProposer | RoleLearner},
		Member{ID: 4, Roles: RoleAcceptor},
	)
	if got := c.Acceptors(); !slices.Equal(got, []NodeID{1, 2, 3, 4}) {
		t.Fatalf("Acceptors() = %v", got)
	}
	if got := c.Proposers(); !slices.Equal(got, []NodeID{1, 5}) {
		t.Fatalf("Proposers() = %v", got)
	}
	if got := c.Learners(); !slices.Equal(got, []NodeID{1, 2, 5}) {
		t.Fatalf("Learners() = %v", got)
	}
	if !c.Has(2, RoleAcceptor|RoleLearner) || c.Has(2, RoleProposer) || c.Has(9, RoleLearner) {
		t.Fatal("Has answers wrongly")
	}
	for _, tc := range []struct {
		voters []NodeID
		want   bool
	}{
		{[]NodeID{1, 2}, false},    // 2 of 4 acceptors is not a majority
		{[]NodeID{1, 2, 3}, true},  // 3 of 4 is
		{[]NodeID{1, 2, 5}, false}, // 5 is no acceptor
		{[]NodeID{1, 2, 3, 4}, true},
		{nil, false},
	} {
		if got := c.IsQuorum(tc.voters); got != tc.want {
			t.Errorf("IsQuorum(%v) = %v, want %v", tc.voters, got, tc.want)
		}
	}
	for _, bad := range [][]Member{
		nil,
		{{ID: 0, Roles: RoleAll}},
		{{ID: 1, Roles: RoleAll}, {ID: 1, Roles: RoleAll}},
		{{ID: 1, Roles: 0}},
		{{ID: 1, Roles: RoleAcceptor | RoleProposer}}, // proposer without learner
		{{ID: 1, Roles: RoleAcceptor | RoleLearner}},  // no proposer
		{{ID: 1, Roles: RoleProposer | RoleLearner}},  // no acceptor
	} {
		if _, err := NewMembership(bad...); !errors.Is(err, ErrBadMembership) {
			t.Errorf("NewMembership(%v): %v, want ErrBadMembership", bad, err)
		}
	}
	if s := (RoleProposer | RoleLearner).String(); s != "proposer,learner" {
		t.Fatalf("role prints as %q", s)
	}
}

// scripted is a Core that hands out the Ready it is given and records what
// it is asked to do.
type scripted struct {
	name  string
	log   *[]string
	next  Ready
	steps []Message
}

func (c *scripted) Step(m Message) error {
	c.steps = append(c.steps, m)
	*c.log = append(*c.log, fmt.Sprintf("%s step %s", c.name, m.Type))
	return nil
}
func (c *scripted) Tick()        {}
func (c *scripted) Ready() Ready { return c.next }
func (c *scripted) Advance() {
	c.next = Ready{}
	*c.log = append(*c.log, c.name+" advance")
}

type logStorage struct {
	log  *[]string
	err  error
	recs []Record
}

func (s *logStorage) Save(recs []Record) error { return s.store("save", recs) }

func (s *logStorage) Write(recs []Record) error { return s.store("write", recs) }

func (s *logStorage) store(how string, recs []Record) error {
	*s.log = append(*s.log, fmt.Sprintf("%s %d", how, len(recs)))
	if s.err != nil {
		return s.err
	}
	s.recs = append(s.recs, recs...)
	return nil
}

type logTransport struct {
	log  *[]string
	sent []Message
}

func (t *logTransport) Send(msgs []Message) {
	*t.log = append(*t.log, fmt.Sprintf("send %d", len(msgs)))
	t.sent = append(t.sent, msgs...)
}

func newTestNode(t *testing.T, storageErr error) (*Node, *scripted, *scripted, *logStorage, *logTransport, *[]string) {
	t.Helper()
	log := &[]string{}
	acc := &scripted{name: "acceptor", log: log}
	lrn := &scripted{name: "learner", log: log}
	st := &logStorage{log: log, err: storageErr}
	tr := &logTransport{log: log}
	n, err := NewNode(NodeConfig{ID: 1, Acceptor: acc, Learner: lrn, Storage: st, Transport: tr,
		Apply: func(ds []Decision) { *log = append(*log, fmt.Sprintf("apply %d", len(ds))) }})
	if err != nil {
		t.Fatal(err)
	}
	return n, acc, lrn, st, tr, log
}

func TestFlushOrder(t *testing.T) {
	n, acc, lrn, st, tr, log := newTestNode(t, nil)
	acc.next = Ready{
		Writes:   []Record{{Type: RecPromise, Ballot: Ballot{1, 2}}},
		Messages: []Message{{Type: MsgPromise, From: 1, To: 2}, {Type: MsgAccept, From: 1, To: 1}},
	}
	lrn.next = Ready{
		Writes:  []Record{{Type: RecChosen, Slot: 1}},
		Decided: []Decision{{Slot: 1}},
	}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	// One synced batch with both cores' writes, then the remote message,
	// then the decisions, then advance; the message to itself is delivered
	// directly afterwards.
	want := []string{"save 2", "send 1", "apply 1", "acceptor advance", "learner advance", "acceptor step Accept"}
	if got := (*log)[:len(want)]; !reflect.DeepEqual(got, want) {
		t.Fatalf("flush did %v, want %v", got, want)
	}
	if len(st.recs) != 2 || len(tr.sent) != 1 || tr.sent[0].To != 2 {
		t.Fatalf("saved %v, sent %v", st.recs, tr.sent)
	}
}

// A learner's own copy of what was chosen is written without a sync, and
// synced before the learner reports its progress to a peer, even when the
// report comes in a later flush with nothing to write.
func TestFlushSyncsOnlyWhatNeedsIt(t *testing.T) {
	n, acc, lrn, _, _, log := newTestNode(t, nil)
	flush := func() {
		t.Helper()
		*log = nil
		if err := n.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	lrn.next = Ready{Writes: []Record{{Type: RecChosen, Slot: 1}, {Type: RecApplied, Slot: 1}}, Decided: []Decision{{Slot: 1}}}
	flush()
	if (*log)[0] != "write 2" {
		t.Fatalf("a learner's chosen value and applied slot: flush did %v, want an unsynced write first", *log)
	}
	lrn.next = Ready{Messages: []Message{{Type: MsgProgress, From: 1, To: 2, Commit: 1}}}
	flush()
	if (*log)[0] != "save 0" {
		t.Fatalf("a progress report after unsynced writes: flush did %v, want a sync first", *log)
	}
	lrn.next = Ready{Messages: []Message{{Type: MsgProgress, From: 1, To: 2, Commit: 1}}}
	flush()
	if slices.ContainsFunc(*log, func(s string) bool { return strings.HasPrefix(s, "save") }) {
		t.Fatalf("a progress report with nothing unsynced: flush did %v, want no sync", *log)
	}
	acc.next = Ready{Writes: []Record{{Type: RecAccept, Slot: 2}}}
	lrn.next = Ready{Writes: []Record{{Type: RecChosen, Slot: 1}}}
	flush()
	if (*log)[0] != "save 2" {
		t.Fatalf("an acceptor's vote with a learner's write: flush did %v, want one synced batch", *log)
	}
}

func TestFlushDeliversLocalMessages(t *testing.T) {
	log := &[]string{}
	acc := &scripted{name: "acceptor", log: log}
	prop := &scripted{name: "proposer", log: log}
	lrn := &scripted{name: "learner", log: log}
	tr := &logTransport{log: log}
	n, err := NewNode(NodeConfig{ID: 1, Acceptor: acc, Proposer: prop, Learner: lrn, Storage: &logStorage{log: log}, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	prop.next = Ready{Messages: []Message{{Type: MsgAccept, From: 1, To: 1}, {Type: MsgAccept, From: 1, To: 2}, {Type: MsgDecide, From: 1, To: 1}}}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(tr.sent) != 1 || tr.sent[0].To != 2 {
		t.Fatalf("sent %v; only the message to node 2 should leave", tr.sent)
	}
	if len(acc.steps) != 1 || acc.steps[0].Type != MsgAccept || len(lrn.steps) != 1 || len(prop.steps) != 1 {
		t.Fatalf("local delivery: acceptor got %v, proposer %v, learner %v", acc.steps, prop.steps, lrn.steps)
	}
}

func TestStorageFailureStopsNode(t *testing.T) {
	boom := errors.New("disk on fire")
	n, acc, _, _, tr, _ := newTestNode(t, boom)
	acc.next = Ready{Writes: []Record{{Type: RecPromise}}, Messages: []Message{{Type: MsgPromise, From: 1, To: 2}}}
	err := n.Flush()
	if !errors.Is(err, ErrStopped) || !errors.Is(err, boom) {
		t.Fatalf("Flush: %v, want ErrStopped wrapping the storage error", err)
	}
	if len(tr.sent) != 0 {
		t.Fatal("a message left although its write failed")
	}
	if err := n.Deliver(Message{Type: MsgPrepare, From: 2, To: 1}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Deliver after the failure: %v, want ErrStopped", err)
	}
	if err := n.Flush(); !errors.Is(err, ErrStopped) {
		t.Fatalf("second Flush: %v, want ErrStopped", err)
	}
}

func TestDeliverRouting(t *testing.T) {
	n, acc, lrn, _, _, _ := newTestNode(t, nil)
	if err := n.Deliver(Message{Type: MsgPrepare, From: 2, To: 1}); err != nil || len(acc.steps) != 1 {
		t.Fatalf("Prepare: %v, acceptor steps %d", err, len(acc.steps))
	}
	if err := n.Deliver(Message{Type: MsgHeartbeat, From: 2, To: 1}); err != nil || len(lrn.steps) != 1 {
		t.Fatalf("Heartbeat: %v, learner steps %d", err, len(lrn.steps))
	}
	if err := n.Deliver(Message{Type: MsgPromise, From: 2, To: 1}); !errors.Is(err, ErrNoRole) {
		t.Fatalf("Promise to a node without a proposer: %v, want ErrNoRole", err)
	}
	if err := n.Deliver(Message{Type: MsgPrepare, From: 2, To: 3}); err == nil {
		t.Fatal("a message for node 3 was delivered to node 1")
	}
	if err := n.Deliver(Message{Type: 0, From: 2, To: 1}); err == nil {
		t.Fatal("a message of unknown type was delivered")
	}
	var nl *NotLeaderError
	if err := n.Propose(time.Now(), []Command{{Data: []byte("x")}}); !errors.As(err, &nl) {
		t.Fatalf("Propose without a proposer: %v, want NotLeaderError", err)
	}
}

// writingCore is a scripted core whose every Step asks for one write.
type writingCore struct{ scripted }

func (c *writingCore) Step(m Message) error {
	c.next.Writes = append(c.next.Writes, Record{Type: RecPromise, Ballot: m.Ballot})
	return c.scripted.Step(m)
}

// Run hands every queued input to the cores before it flushes, so their
// writes share one synced batch; it stops on cancel and on a storage error.
func TestRunGroupCommits(t *testing.T) {
	for _, storageErr := range []error{nil, errors.New("disk on fire")} {
		log := &[]string{}
		acc := &writingCore{scripted{name: "acceptor", log: log}}
		st := &logStorage{log: log, err: storageErr}
		n, err := NewNode(NodeConfig{ID: 1, Acceptor: acc, Storage: st, Transport: &logTransport{log: log}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		for i := range 10 {
			if err := n.Receive(ctx, Message{Type: MsgPrepare, From: 2, To: 1, Ballot: Ballot{Round: uint64(i + 1), Node: 2}}); err != nil {
				t.Fatal(err)
			}
		}
		ran := make(chan struct{})
		if err := n.Do(ctx, func() { close(ran) }); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx, time.Hour) }()
		<-ran
		if storageErr == nil {
			cancel()
		}
		err = <-done
		cancel()
		if storageErr == nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel: %v", err)
		}
		if storageErr != nil && !errors.Is(err, ErrStopped) {
			t.Fatalf("Run after a storage failure: %v, want ErrStopped", err)
		}
		if saves := slices.DeleteFunc(slices.Clone(*log), func(s string) bool { return !strings.HasPrefix(s, "save") }); !slices.Equal(saves, []string{"save 10"}) {
			t.Fatalf("saves %q: want the ten inputs' writes in one batch", saves)
		}
		if err := n.Receive(context.Background(), Message{}); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("Receive after Run returned: %v, want ErrNotRunning", err)
		}
	}
}

// Logs show a ballot as round.node, in JSON as in text.
func TestBallotInLogs(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "ballot", Ballot{Round: 11, Node: 3})
	if !strings.Contains(buf.String(), `"ballot":"11.3"`) {
		t.Fatalf("JSON log %s; want \"ballot\":\"11.3\"", buf.String())
	}
}
