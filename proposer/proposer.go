package proposer

import (
	"cmp"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"

	"github.com/paxosd/paxosd/paxos"
)

// Config configures a Proposer. Zero values take the defaults named.
type Config struct {
	ID         paxos.NodeID
	Membership paxos.Membership
	// Window is how many slots a leader keeps in flight at once. Default 32.
	Window int
	// MaxBatch is the most commands one slot carries. Default 512.
	MaxBatch int
	// MaxBatchBytes is the most command bytes one slot carries; a single
	// larger command still gets a slot of its own. Default 1 MiB.
	MaxBatchBytes int
	// MaxQueue is how many commands may wait for a slot before Propose
	// returns paxos.ErrOverloaded. Default 65536.
	MaxQueue int
	// HeartbeatTicks is the leader's heartbeat period. Default 2.
	HeartbeatTicks int
	// ElectionTicks sets the failure detector: a follower that hears no
	// leader for a random number of ticks in [ElectionTicks,
	// 2*ElectionTicks) campaigns, and a candidate without a quorum of
	// promises in as long tries again with a higher ballot. Default 10.
	ElectionTicks int
	// RetransmitTicks is how long a leader waits for acceptors to answer an
	// Accept before sending it again. Default 4.
	RetransmitTicks int
	// Rand draws the randomized timeouts. Required: the core never uses
	// the global source, so that runs replay.
	Rand   *rand.Rand
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Window, 32)
	def(&c.MaxBatch, 512)
	def(&c.MaxBatchBytes, 1<<20)
	def(&c.MaxQueue, 65536)
	def(&c.HeartbeatTicks, 2)
	def(&c.ElectionTicks, 10)
	def(&c.RetransmitTicks, 4)
}

// Validate reports what is wrong with c after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case !c.Membership.Has(c.ID, paxos.RoleProposer):
		return fmt.Errorf("proposer: node %d is not a proposer of the cluster", c.ID)
	case c.Rand == nil:
		return fmt.Errorf("proposer: Config.Rand is required")
	case c.Window < 1 || c.MaxBatch < 1 || c.MaxBatchBytes < 1 || c.MaxQueue < 1:
		return fmt.Errorf("proposer: Window, MaxBatch, MaxBatchBytes and MaxQueue must be positive")
	case c.HeartbeatTicks < 1 || c.RetransmitTicks < 1:
		return fmt.Errorf("proposer: HeartbeatTicks and RetransmitTicks must be positive")
	case c.ElectionTicks <= c.HeartbeatTicks:
		return fmt.Errorf("proposer: ElectionTicks (%d) must exceed HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks)
	}
	return nil
}

type state uint8

const (
	stateFollower state = iota
	stateCandidate
	stateLeader
)

func (s state) String() string {
	switch s {
	case stateFollower:
		return "follower"
	case stateCandidate:
		return "candidate"
	case stateLeader:
		return "leader"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// proposal is a slot the leader has sent Accepts for.
type proposal struct {
	value paxos.Value
	acks  []paxos.NodeID // distinct acceptors that accepted at the leader's ballot
	age   int            // ticks since the Accepts were last sent
}

// Proposer is the proposer core. It is not safe for concurrent use.
type Proposer struct {
	cfg    Config
	logger *slog.Logger
	// peers are the heartbeat targets: every learner, this node's own too.
	// NB: the local learner needs the heartbeat as much as the others. A
	// new leader may start above slots its learner never heard were chosen
	// (an acceptor's floor says so), and with no new commands nothing else
	// would tell that learner to catch up.
	peers []paxos.NodeID

	state   state
	ballot  paxos.Ballot // our ballot while candidate or leader
	maxSeen paxos.Ballot // highest ballot seen anywhere; the next campaign goes above it
	leader  paxos.NodeID // the leader a follower heeds; 0 when none is known
	// leaderBallot is the ballot of the leader a follower heeds.
	leaderBallot paxos.Ballot
	elapsed      int // ticks without a leader's word (follower) or a quorum (candidate)
	timeout      int // randomized election timeout for the current wait

	// decided: every slot <= decided is chosen. Invariant: never decreases.
	decided      paxos.Slot
	decidedAbove map[paxos.Slot]struct{} // chosen slots above decided

	// Candidate state: the phase-1 start slot, who promised, and per slot
	// the entry with the highest ballot among the promises.
	from     paxos.Slot
	promised []paxos.NodeID
	found    map[paxos.Slot]paxos.Entry
	// floor is the highest acceptor floor the promises reported: every
	// slot <= floor is chosen and must not be proposed again.
	floor paxos.Slot

	// Leader state.
	next       paxos.Slot // next free slot
	inflight   map[paxos.Slot]*proposal
	queue      []paxos.Command // waiting for a slot; kept by candidate and leader
	hbElapsed  int
	decidedBuf []paxos.Entry // chosen since the last Ready, to announce

	rd paxos.Ready
}

// New returns a proposer in the follower state. A proposer keeps no durable
// state of its own: after a restart it learns the chosen prefix from the
// local learner's MsgLearned and ballots from the acceptors' answers.
func New(cfg Config) (*Proposer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	p := &Proposer{cfg: cfg, logger: cfg.Logger, decidedAbove: map[paxos.Slot]struct{}{}}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	p.logger = p.logger.With("node", cfg.ID, "role", "proposer")
	p.peers = cfg.Membership.Learners()
	p.resetTimeout()
	return p, nil
}

// Leader returns the leader this proposer knows of (itself when it leads),
// or 0.
func (p *Proposer) Leader() paxos.NodeID { return p.leader }

// IsLeader reports whether this proposer is the distinguished leader.
func (p *Proposer) IsLeader() bool { return p.state == stateLeader }

// Ballot returns the proposer's current ballot (zero if it never campaigned).
func (p *Proposer) Ballot() paxos.Ballot { return p.ballot }

// Decided returns the prefix of the log this proposer knows to be chosen.
func (p *Proposer) Decided() paxos.Slot { return p.decided }

// State returns "follower", "candidate" or "leader".
func (p *Proposer) State() string { return p.state.String() }

// Step handles one message; see the MsgType constants for who sends what.
func (p *Proposer) Step(m paxos.Message) error {
	switch m.Type {
	case paxos.MsgPropose:
		return p.handlePropose(m)
	case paxos.MsgLearned:
		if m.From != p.cfg.ID {
			return fmt.Errorf("proposer: Learned from %d, which is not this node", m.From)
		}
		p.advanceDecided(m.Commit)
		return nil
	case paxos.MsgPromise, paxos.MsgAccepted, paxos.MsgNack:
		if !p.cfg.Membership.Has(m.From, paxos.RoleAcceptor) {
			return fmt.Errorf("proposer: %s from %d, which is not an acceptor", m.Type, m.From)
		}
	case paxos.MsgHeartbeat, paxos.MsgDecide:
		if !p.cfg.Membership.Has(m.From, paxos.RoleProposer) || m.Ballot.Node != m.From {
			return fmt.Errorf("proposer: %s from %d with ballot %v", m.Type, m.From, m.Ballot)
		}
	default:
		return fmt.Errorf("proposer: unexpected %s from %d", m.Type, m.From)
	}
	p.maxSeen = p.maxSeen.Max(m.Ballot)
	switch m.Type {
	case paxos.MsgPromise:
		return p.handlePromise(m)
	case paxos.MsgAccepted:
		p.handleAccepted(m)
	case paxos.MsgNack:
		p.handleNack(m)
	case paxos.MsgHeartbeat:
		p.handleLeaderAlive(m)
	case paxos.MsgDecide:
		p.handleLeaderAlive(m)
		for _, e := range m.Entries {
			p.markDecided(e.Slot)
		}
	}
	return nil
}

// Tick drives the failure detector, heartbeats and retransmission.
func (p *Proposer) Tick() {
	switch p.state {
	case stateFollower, stateCandidate:
		p.elapsed++
		if p.elapsed >= p.timeout {
			p.becomeCandidate()
		}
	case stateLeader:
		p.hbElapsed++
		if p.hbElapsed >= p.cfg.HeartbeatTicks {
			p.bcastHeartbeat()
		}
		p.maybeRetransmit()
	}
}

// Ready returns the work produced since the last Advance.
func (p *Proposer) Ready() paxos.Ready {
	p.bcastDecided()
	return p.rd
}

// bcastDecided announces the slots chosen since the last call with one
// Decide per learner, this node's own included, all sharing the entries. It
// runs before every role change too, so a Decide always carries the ballot
// that chose its entries.
func (p *Proposer) bcastDecided() {
	if len(p.decidedBuf) == 0 {
		return
	}
	for _, to := range p.cfg.Membership.Learners() {
		p.send(paxos.Message{Type: paxos.MsgDecide, To: to, Ballot: p.ballot, Entries: p.decidedBuf})
	}
	p.decidedBuf = nil
}

// Advance forgets the work returned by Ready.
func (p *Proposer) Advance() { p.rd = paxos.Ready{} }

func (p *Proposer) resetTimeout() {
	p.elapsed = 0
	p.timeout = p.cfg.ElectionTicks + p.cfg.Rand.IntN(p.cfg.ElectionTicks)
}

// becomeCandidate starts phase 1 for every slot from the first one not known
// to be chosen, with a ballot above every ballot seen (§2.2, §3).
func (p *Proposer) becomeCandidate() {
	p.dropLeaderState()
	p.state = stateCandidate
	p.ballot = paxos.Ballot{Round: max(p.maxSeen.Round, p.ballot.Round) + 1, Node: p.cfg.ID}
	p.maxSeen = p.ballot
	p.leader, p.leaderBallot = 0, paxos.Ballot{}
	// NB: decided comes from Decides this proposer received and from its
	// own learner (MsgLearned), never from a leader's heartbeat Commit. A
	// leader can announce a slot chosen in a heartbeat and crash before any
	// learner stored it; a successor that started phase 1 above that slot
	// would never re-propose it, and every learner would wait for it.
	p.from = p.decided + 1
	p.found = map[paxos.Slot]paxos.Entry{}
	p.resetTimeout()
	p.logger.Info("campaigning", "ballot", p.ballot, "slot", p.from)
	for _, to := range p.cfg.Membership.Acceptors() {
		p.send(paxos.Message{Type: paxos.MsgPrepare, To: to, Ballot: p.ballot, Slot: p.from})
	}
}

// handlePromise collects phase 1b answers; a quorum makes this proposer the
// leader.
func (p *Proposer) handlePromise(m paxos.Message) error {
	if p.state != stateCandidate || m.Ballot != p.ballot || m.Slot != p.from {
		return nil // late or duplicate: not for this campaign
	}
	if slices.Contains(p.promised, m.From) {
		return nil
	}
	for _, e := range m.Entries {
		if e.Slot < p.from || e.Slot <= m.Commit || !e.Ballot.Less(p.ballot) {
			return fmt.Errorf("proposer: promise from %d for %v holds slot %d at ballot %v", m.From, m.Ballot, e.Slot, e.Ballot)
		}
	}
	for _, e := range m.Entries {
		if cur, ok := p.found[e.Slot]; !ok || cur.Ballot.Less(e.Ballot) {
			p.found[e.Slot] = e
		}
	}
	p.floor = max(p.floor, m.Commit)
	p.promised = append(p.promised, m.From)
	if p.cfg.Membership.IsQuorum(p.promised) {
		p.becomeLeader()
	}
	return nil
}

// becomeLeader ends phase 1: it re-proposes, with its own ballot, the
// highest-ballot value reported for every slot from the phase-1 start up to
// the highest slot any promise mentioned, filling holes with no-ops (§3).
// Slots at or below an acceptor's floor are chosen already and skipped: the
// acceptor no longer reports their values, so a no-op there could overwrite
// a chosen value.
func (p *Proposer) becomeLeader() {
	p.state = stateLeader
	p.leader, p.leaderBallot = p.cfg.ID, p.ballot
	p.advanceDecided(p.floor)
	start := max(p.from, p.floor+1)
	top := start - 1
	for s := range p.found {
		top = max(top, s)
	}
	// NB: the range can be long when this proposer's learner lags far
	// behind the acceptors; size the map for a normal window, not for it.
	p.inflight = make(map[paxos.Slot]*proposal, min(uint64(top-start+1), uint64(4*p.cfg.Window)))
	for s := start; s <= top; s++ {
		p.propose(s, p.found[s].Value) // a hole reads as the nil Value: the no-op
	}
	p.next = top + 1
	p.found = nil
	p.logger.Info("became leader", "ballot", p.ballot, "slot", start, "recovered", int(top-start+1))
	p.bcastHeartbeat()
	p.maybePropose()
}

func (p *Proposer) handlePropose(m paxos.Message) error {
	if p.state == stateFollower {
		return &paxos.NotLeaderError{Leader: p.leader}
	}
	if len(p.queue)+len(m.Cmds) > p.cfg.MaxQueue {
		return paxos.ErrOverloaded
	}
	p.queue = append(p.queue, m.Cmds...)
	if p.state == stateLeader {
		p.maybePropose()
	}
	return nil
}

// maybePropose fills free window places with batches of queued commands.
// Batching is adaptive: a lone command goes out at once, and commands that
// arrive while the window is full share the next free slot.
func (p *Proposer) maybePropose() {
	for len(p.queue) > 0 && len(p.inflight) < p.cfg.Window {
		n, size := 0, 0
		for n < len(p.queue) && n < p.cfg.MaxBatch {
			size += len(p.queue[n].Data)
			if n > 0 && size > p.cfg.MaxBatchBytes {
				break
			}
			n++
		}
		v := paxos.EncodeBatch(p.queue[:n])
		clear(p.queue[:n]) // let the command bytes be collected
		p.queue = p.queue[n:]
		if len(p.queue) == 0 {
			p.queue = nil
		}
		p.propose(p.next, v)
		p.next++
	}
}

// propose starts phase 2 for slot s with value v at the leader's ballot.
func (p *Proposer) propose(s paxos.Slot, v paxos.Value) {
	if _, ok := p.inflight[s]; ok {
		panic(fmt.Sprintf("proposer: slot %d proposed twice at ballot %v", s, p.ballot))
	}
	p.inflight[s] = &proposal{value: v}
	for _, to := range p.cfg.Membership.Acceptors() {
		p.send(paxos.Message{Type: paxos.MsgAccept, To: to, Ballot: p.ballot, Slot: s, Value: v})
	}
}

// handleAccepted counts phase 2b answers; a quorum chooses the slot.
func (p *Proposer) handleAccepted(m paxos.Message) {
	if p.state != stateLeader || m.Ballot != p.ballot {
		return
	}
	pr := p.inflight[m.Slot]
	if pr == nil || slices.Contains(pr.acks, m.From) {
		return
	}
	pr.acks = append(pr.acks, m.From)
	if !p.cfg.Membership.IsQuorum(pr.acks) {
		return
	}
	delete(p.inflight, m.Slot)
	p.decidedBuf = append(p.decidedBuf, paxos.Entry{Slot: m.Slot, Ballot: p.ballot, Value: pr.value})
	p.markDecided(m.Slot)
	p.maybePropose()
}

// handleNack steps down when an acceptor has promised a higher ballot, and
// learns from a refused Accept that slots up to the acceptor's floor
// (Commit) are chosen.
func (p *Proposer) handleNack(m paxos.Message) {
	if m.Commit > 0 {
		p.advanceDecided(m.Commit)
		if p.state == stateLeader {
			// The slots are chosen; what this leader proposed there was
			// a re-proposal, and the learners get them from each other.
			for s := range p.inflight {
				if s <= m.Commit {
					delete(p.inflight, s)
				}
			}
			p.next = max(p.next, m.Commit+1)
			p.maybePropose()
		}
	}
	if p.state != stateFollower && p.ballot.Less(m.Ballot) {
		p.logger.Info("stepping down", "ballot", p.ballot, "peer", m.From, "promised", m.Ballot)
		p.becomeFollower(0, paxos.Ballot{})
	}
}

// handleLeaderAlive notes a heartbeat or decision from a leader.
func (p *Proposer) handleLeaderAlive(m paxos.Message) {
	if m.From == p.cfg.ID {
		return
	}
	switch p.state {
	case stateCandidate, stateLeader:
		if p.ballot.Less(m.Ballot) {
			p.logger.Info("stepping down", "ballot", p.ballot, "peer", m.From, "leader_ballot", m.Ballot)
			p.becomeFollower(m.From, m.Ballot)
		}
	case stateFollower:
		if !m.Ballot.Less(p.leaderBallot) {
			p.leader, p.leaderBallot = m.From, m.Ballot
			p.elapsed = 0
		}
	}
}

func (p *Proposer) becomeFollower(leader paxos.NodeID, b paxos.Ballot) {
	p.dropLeaderState()
	p.state = stateFollower
	p.leader, p.leaderBallot = leader, b
	p.resetTimeout()
}

// dropLeaderState forgets candidate and leader work. Queued commands are
// dropped without an answer: their clients time out and retry with the same
// (session, seq). Decisions not yet announced are kept: they are chosen.
func (p *Proposer) dropLeaderState() {
	p.bcastDecided()
	p.inflight = nil
	p.queue = nil
	p.found = nil
	p.floor = 0
	p.promised = p.promised[:0]
}

func (p *Proposer) bcastHeartbeat() {
	p.hbElapsed = 0
	for _, to := range p.peers {
		p.send(paxos.Message{Type: paxos.MsgHeartbeat, To: to, Ballot: p.ballot, Commit: p.decided})
	}
}

// maybeRetransmit resends Accepts that have waited RetransmitTicks, to the
// acceptors that have not answered them.
func (p *Proposer) maybeRetransmit() {
	var due []paxos.Slot
	for s, pr := range p.inflight {
		pr.age++
		if pr.age >= p.cfg.RetransmitTicks {
			due = append(due, s)
		}
	}
	slices.SortFunc(due, cmp.Compare)
	for _, s := range due {
		pr := p.inflight[s]
		pr.age = 0
		for _, to := range p.cfg.Membership.Acceptors() {
			if !slices.Contains(pr.acks, to) {
				p.send(paxos.Message{Type: paxos.MsgAccept, To: to, Ballot: p.ballot, Slot: s, Value: pr.value})
			}
		}
	}
}

func (p *Proposer) markDecided(s paxos.Slot) {
	if s <= p.decided {
		return
	}
	p.decidedAbove[s] = struct{}{}
	p.advanceDecided(p.decided)
}

// advanceDecided raises the chosen prefix to at least c, then over any
// chosen slots that now follow it.
func (p *Proposer) advanceDecided(c paxos.Slot) {
	if c > p.decided {
		p.decided = c
		for s := range p.decidedAbove {
			if s <= c {
				delete(p.decidedAbove, s)
			}
		}
	}
	for {
		if _, ok := p.decidedAbove[p.decided+1]; !ok {
			return
		}
		delete(p.decidedAbove, p.decided+1)
		p.decided++
	}
}

func (p *Proposer) send(m paxos.Message) {
	m.From = p.cfg.ID
	p.rd.Messages = append(p.rd.Messages, m)
}
