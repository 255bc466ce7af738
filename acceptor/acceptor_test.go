package acceptor

import (
	"slices"
	"testing"

	"github.com/paxosd/paxosd/paxos"
)

func b(round uint64, node paxos.NodeID) paxos.Ballot { return paxos.Ballot{Round: round, Node: node} }

func newTestAcceptor(t *testing.T, st paxos.AcceptorState) *Acceptor {
	t.Helper()
	a, err := New(Config{ID: 1, Configs: paxos.History{paxos.InitialConfig(paxos.Uniform(5))}}, st)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func step(t *testing.T, a *Acceptor, m paxos.Message) paxos.Ready {
	t.Helper()
	m.To = 1
	if err := a.Step(m); err != nil {
		t.Fatalf("Step(%v): %v", m, err)
	}
	rd := a.Ready()
	a.Advance()
	return rd
}

func TestPrepare(t *testing.T) {
	accepted := []paxos.Entry{
		{Slot: 3, Ballot: b(1, 2), Value: paxos.Value("x")},
		{Slot: 5, Ballot: b(2, 3), Value: paxos.Value("y")},
		{Slot: 9, Ballot: b(2, 3), Value: nil},
	}
	for _, tc := range []struct {
		name       string
		promised   paxos.Ballot
		in         paxos.Ballot
		from       paxos.Slot
		want       paxos.MsgType
		wantSlots  []paxos.Slot
		wantBallot paxos.Ballot
	}{
		{"higher ballot is promised with entries from the slot", b(2, 3), b(3, 2), 4, paxos.MsgPromise, []paxos.Slot{5, 9}, b(3, 2)},
		{"all entries from slot 1", b(2, 3), b(3, 2), 1, paxos.MsgPromise, []paxos.Slot{3, 5, 9}, b(3, 2)},
		{"nothing above the top slot", b(2, 3), b(3, 2), 10, paxos.MsgPromise, nil, b(3, 2)},
		{"lower ballot is refused", b(5, 1), b(4, 2), 1, paxos.MsgNack, nil, b(5, 1)},
		{"equal ballot is refused", b(2, 3), b(2, 3), 1, paxos.MsgNack, nil, b(2, 3)},
		{"same round higher node wins", b(2, 3), b(2, 4), 1, paxos.MsgPromise, []paxos.Slot{3, 5, 9}, b(2, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAcceptor(t, paxos.AcceptorState{Promised: tc.promised, Accepted: accepted})
			rd := step(t, a, paxos.Message{Type: paxos.MsgPrepare, From: tc.in.Node, Ballot: tc.in, Slot: tc.from})
			if len(rd.Messages) != 1 {
				t.Fatalf("Prepare(%v) after promising %v: got %d messages, want 1", tc.in, tc.promised, len(rd.Messages))
			}
			m := rd.Messages[0]
			if m.Type != tc.want || m.Ballot != tc.wantBallot || m.To != tc.in.Node || m.From != 1 {
				t.Fatalf("Prepare(%v) after promising %v: got %v, want %v with ballot %v", tc.in, tc.promised, m, tc.want, tc.wantBallot)
			}
			var slots []paxos.Slot
			for _, e := range m.Entries {
				slots = append(slots, e.Slot)
			}
			if !slices.Equal(slots, tc.wantSlots) {
				t.Fatalf("Prepare(%v, slot %d): promised slots %v, want %v", tc.in, tc.from, slots, tc.wantSlots)
			}
			if tc.want == paxos.MsgPromise {
				if len(rd.Writes) != 1 || rd.Writes[0].Type != paxos.RecPromise || rd.Writes[0].Ballot != tc.in {
					t.Fatalf("Prepare(%v): writes %v, want one promise record", tc.in, rd.Writes)
				}
				if a.Promised() != tc.in {
					t.Fatalf("Promised() = %v, want %v", a.Promised(), tc.in)
				}
			} else if len(rd.Writes) != 0 || a.Promised() != tc.promised {
				t.Fatalf("refused Prepare(%v) wrote %v and left promise %v", tc.in, rd.Writes, a.Promised())
			}
		})
	}
}

func TestAccept(t *testing.T) {
	for _, tc := range []struct {
		name     string
		promised paxos.Ballot
		prior    *paxos.Entry
		in       paxos.Ballot
		want     paxos.MsgType
		writes   []paxos.RecordType
	}{
		{"at the promise", b(2, 2), nil, b(2, 2), paxos.MsgAccepted, []paxos.RecordType{paxos.RecAccept}},
		{"above the promise raises it", b(2, 2), nil, b(3, 3), paxos.MsgAccepted, []paxos.RecordType{paxos.RecPromise, paxos.RecAccept}},
		{"below the promise is refused", b(4, 1), nil, b(3, 3), paxos.MsgNack, nil},
		{"duplicate needs no write", b(2, 2), &paxos.Entry{Slot: 7, Ballot: b(2, 2), Value: paxos.Value("v")}, b(2, 2), paxos.MsgAccepted, nil},
		{"higher ballot overwrites", b(3, 3), &paxos.Entry{Slot: 7, Ballot: b(2, 2), Value: paxos.Value("old")}, b(3, 3), paxos.MsgAccepted, []paxos.RecordType{paxos.RecAccept}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := paxos.AcceptorState{Promised: tc.promised}
			if tc.prior != nil {
				st.Accepted = []paxos.Entry{*tc.prior}
			}
			a := newTestAcceptor(t, st)
			rd := step(t, a, paxos.Message{Type: paxos.MsgAccept, From: tc.in.Node, Ballot: tc.in, Slot: 7, Value: paxos.Value("v")})
			if len(rd.Messages) != 1 || rd.Messages[0].Type != tc.want || rd.Messages[0].Slot != 7 {
				t.Fatalf("Accept(%v) after promising %v: got %v, want one %v for slot 7", tc.in, tc.promised, rd.Messages, tc.want)
			}
			var types []paxos.RecordType
			for _, w := range rd.Writes {
				types = append(types, w.Type)
			}
			if !slices.Equal(types, tc.writes) {
				t.Fatalf("Accept(%v) after promising %v: writes %v, want %v", tc.in, tc.promised, types, tc.writes)
			}
			e, ok := a.Accepted(7)
			switch tc.want {
			case paxos.MsgAccepted:
				if !ok || e.Ballot != tc.in || string(e.Value) != "v" {
					t.Fatalf("after Accept(%v): slot 7 holds %v, %v", tc.in, e, ok)
				}
				if rd.Messages[0].Ballot != tc.in {
					t.Fatalf("Accepted carries %v, want %v", rd.Messages[0].Ballot, tc.in)
				}
			case paxos.MsgNack:
				if ok {
					t.Fatalf("refused Accept(%v) stored %v", tc.in, e)
				}
				if rd.Messages[0].Ballot != tc.promised {
					t.Fatalf("Nack carries %v, want the promise %v", rd.Messages[0].Ballot, tc.promised)
				}
			}
			if a.Promised().Less(a.MaxAccepted()) {
				t.Fatalf("accepted %v above promised %v", a.MaxAccepted(), a.Promised())
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	a := newTestAcceptor(t, paxos.AcceptorState{})
	for _, m := range []paxos.Message{
		{Type: paxos.MsgPrepare, From: 2, Ballot: b(1, 3)},            // someone else's ballot
		{Type: paxos.MsgAccept, From: 2, Ballot: b(1, 2), Slot: 0},    // slot 0
		{Type: paxos.MsgDecide, From: 2, Ballot: b(1, 2)},             // not for an acceptor
		{Type: paxos.MsgType(200), From: 2, Ballot: b(1, 2), Slot: 1}, // unknown type
	} {
		if err := a.Step(m); err == nil {
			t.Errorf("Step(%v): got no error, want one", m)
		}
		if rd := a.Ready(); !rd.Empty() || !a.Promised().IsZero() {
			t.Errorf("Step(%v) changed state: %+v, promised %v", m, rd, a.Promised())
		}
	}
}

func TestRecoveryRefusesAcceptedAbovePromise(t *testing.T) {
	_, err := New(Config{ID: 1, Configs: paxos.History{paxos.InitialConfig(paxos.Uniform(3))}}, paxos.AcceptorState{
		Promised: b(1, 1),
		Accepted: []paxos.Entry{{Slot: 1, Ballot: b(2, 2)}},
	})
	if err == nil {
		t.Fatal("New accepted a state with a value above the promise")
	}
}

func TestConfigValidate(t *testing.T) {
	h := paxos.History{paxos.InitialConfig(paxos.Uniform(3))}
	for _, c := range []Config{{ID: 0, Configs: h}, {ID: 1}, {ID: 1, Configs: h, StickyTicks: -1}} {
		if _, err := New(c, paxos.AcceptorState{}); err == nil {
			t.Errorf("New took %+v", c)
		}
	}
}

// An acceptor grants a pre-vote only once it has not heard a leader for
// StickyTicks, and only for a ballot above its promise; granting changes
// nothing it stores. A heartbeat is answered with the promise.
func TestPreVoteSticky(t *testing.T) {
	a, err := New(Config{ID: 1, Configs: paxos.History{paxos.InitialConfig(paxos.Uniform(3))}, StickyTicks: 3}, paxos.AcceptorState{Promised: b(2, 2)})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(ballot paxos.Ballot) bool {
		t.Helper()
		if err := a.Step(paxos.Message{Type: paxos.MsgPreVote, From: ballot.Node, To: 1, Ballot: ballot, Slot: 5}); err != nil {
			t.Fatal(err)
		}
		rd := a.Ready()
		a.Advance()
		if len(rd.Writes) != 0 || len(rd.Messages) != 1 || rd.Messages[0].Type != paxos.MsgPreVoteReply || rd.Messages[0].Slot != 5 || rd.Messages[0].Ballot != b(2, 2) {
			t.Fatalf("pre-vote answered with %+v", rd)
		}
		return rd.Messages[0].Grant
	}
	if !ask(b(3, 3)) {
		t.Fatal("a fresh acceptor refused a pre-vote above its promise")
	}
	if ask(b(2, 1)) {
		t.Fatal("granted a pre-vote below the promise")
	}
	if err := a.Step(paxos.Message{Type: paxos.MsgHeartbeat, From: 2, To: 1, Ballot: b(2, 2)}); err != nil {
		t.Fatal(err)
	}
	if rd := a.Ready(); len(rd.Messages) != 1 || rd.Messages[0].Type != paxos.MsgHeartbeatAck || rd.Messages[0].Ballot != b(2, 2) {
		t.Fatalf("heartbeat answered with %+v", rd.Messages)
	}
	a.Advance()
	for i := range 3 {
		if ask(b(3, 3)) {
			t.Fatalf("granted a pre-vote %d ticks after a leader's heartbeat", i)
		}
		a.Tick()
	}
	if !ask(b(3, 3)) {
		t.Fatal("refused a pre-vote though no leader was heard for StickyTicks")
	}
	if a.Promised() != b(2, 2) {
		t.Fatalf("pre-votes changed the promise to %v", a.Promised())
	}
	// A read's confirmation round is answered with the promise, whatever
	// the asker's ballot, and the round echoed.
	if err := a.Step(paxos.Message{Type: paxos.MsgConfirm, From: 1, To: 1, Ballot: b(1, 1), Slot: 9}); err != nil {
		t.Fatal(err)
	}
	if rd := a.Ready(); len(rd.Writes) != 0 || len(rd.Messages) != 1 || rd.Messages[0].Type != paxos.MsgHeartbeatAck ||
		rd.Messages[0].Ballot != b(2, 2) || rd.Messages[0].Slot != 9 || rd.Messages[0].To != 1 {
		t.Fatalf("confirm answered with %+v", rd)
	}
	a.Advance()
}

func BenchmarkAcceptorStep(b *testing.B) {
	a, err := New(Config{ID: 1, Configs: paxos.History{paxos.InitialConfig(paxos.Uniform(3))}}, paxos.AcceptorState{})
	if err != nil {
		b.Fatal(err)
	}
	v := paxos.EncodeBatch([]paxos.Command{{Session: 1, Seq: 1, Data: make([]byte, 256)}})
	ballot := paxos.Ballot{Round: 1, Node: 2}
	m := paxos.Message{Type: paxos.MsgAccept, From: 2, To: 1, Ballot: ballot, Value: v}
	b.ReportAllocs()
	for b.Loop() {
		m.Slot++
		if err := a.Step(m); err != nil {
			b.Fatal(err)
		}
		a.Advance()
	}
}

// The truncation rule: an acceptor forgets slots once a majority of the
// learners reported a durable snapshot covering them; it then reports its
// floor in every Promise and refuses Accepts at or below it.
func TestTruncate(t *testing.T) {
	var accepted []paxos.Entry
	for s := paxos.Slot(1); s <= 10; s++ {
		accepted = append(accepted, paxos.Entry{Slot: s, Ballot: b(1, 2), Value: paxos.Value{byte(s)}})
	}
	a := newTestAcceptor(t, paxos.AcceptorState{Promised: b(1, 2), Accepted: accepted})
	// Five learners: the floor is the third-highest report.
	for _, r := range []struct {
		from  paxos.NodeID
		slot  paxos.Slot
		floor paxos.Slot
	}{{1, 9, 0}, {2, 4, 0}, {1, 10, 0}, {3, 6, 4}, {4, 8, 6}, {4, 7, 6}, {5, 2, 6}} {
		rd := step(t, a, paxos.Message{Type: paxos.MsgSnapshotted, From: r.from, Slot: r.slot})
		if a.Floor() != r.floor {
			t.Fatalf("after learner %d reported %d: floor %d, want %d", r.from, r.slot, a.Floor(), r.floor)
		}
		if len(rd.Writes) > 0 && (rd.Writes[0].Type != paxos.RecTruncate || rd.Writes[0].Slot != r.floor) {
			t.Fatalf("truncation wrote %v, want Truncate %d", rd.Writes, r.floor)
		}
	}
	if _, ok := a.Accepted(6); ok || a.Len() != 4 {
		t.Fatalf("slots up to the floor are still held (%d held)", a.Len())
	}
	rd := step(t, a, paxos.Message{Type: paxos.MsgPrepare, From: 3, Ballot: b(2, 3), Slot: 1})
	m := rd.Messages[0]
	if m.Type != paxos.MsgPromise || m.Commit != 6 || len(m.Entries) != 4 || m.Entries[0].Slot != 7 {
		t.Fatalf("promise after truncation to 6: %v, want floor 6 and slots 7..10", m)
	}
	rd = step(t, a, paxos.Message{Type: paxos.MsgAccept, From: 3, Ballot: b(2, 3), Slot: 5, Value: paxos.Value("x")})
	if m := rd.Messages[0]; m.Type != paxos.MsgNack || m.Commit != 6 || len(rd.Writes) != 0 {
		t.Fatalf("Accept below the floor: %v with %d writes, want a Nack with floor 6 and nothing written", m, len(rd.Writes))
	}
	// A report from a node the configuration does not list as a learner
	// is kept but does not count toward a majority.
	if err := a.Step(paxos.Message{Type: paxos.MsgSnapshotted, From: 9, To: 1, Slot: 9}); err != nil {
		t.Fatal(err)
	}
	if rd := a.Ready(); len(rd.Writes) != 0 || a.Floor() != 6 {
		t.Fatalf("a stranger's report raised the floor to %d", a.Floor())
	}
	if _, err := New(Config{ID: 1, Configs: paxos.History{paxos.InitialConfig(paxos.Uniform(5))}}, paxos.AcceptorState{Promised: b(1, 2), Floor: 3, Accepted: accepted[:4]}); err == nil {
		t.Fatal("recovered an accepted slot below the floor")
	}
}
