package proposer

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"

	"github.com/paxosd/paxosd/paxos"
)

// Config configures a Proposer. Zero values take the defaults named.
type Config struct {
	ID paxos.NodeID
	// Configs are the configurations the local learner knows, as of its
	// applied slot. Later ones arrive with Reconfigure.
	Configs paxos.History
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
	// MaxQueueBytes is how many command bytes may wait for a slot before
	// Propose returns paxos.ErrOverloaded: with MaxQueue, it bounds the
	// leader's memory for commands not yet proposed. Default 64 MiB.
	MaxQueueBytes int
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
	// PromoteLag is how close to the leader's applied slot a joining
	// member's learner must be before the leader proposes its promotion.
	// Default paxos.ConfigDelay.
	PromoteLag int
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
	def(&c.MaxQueueBytes, 64<<20)
	def(&c.HeartbeatTicks, 2)
	def(&c.ElectionTicks, 10)
	def(&c.RetransmitTicks, 4)
	def(&c.PromoteLag, int(paxos.ConfigDelay))
}

// Validate reports what is wrong with c after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case len(c.Configs) == 0:
		return fmt.Errorf("proposer: Config.Configs is required")
	case c.Rand == nil:
		return fmt.Errorf("proposer: Config.Rand is required")
	case c.Window < 1 || c.MaxBatch < 1 || c.MaxBatchBytes < 1 || c.MaxQueue < 1 || c.MaxQueueBytes < 1:
		return fmt.Errorf("proposer: Window, MaxBatch, MaxBatchBytes, MaxQueue and MaxQueueBytes must be positive")
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
	// statePreCandidate asks the acceptors whether they would promise,
	// before raising any ballot (MsgPreVote).
	statePreCandidate
	stateCandidate
	stateLeader
)

func (s state) String() string {
	switch s {
	case stateFollower:
		return "follower"
	case statePreCandidate:
		return "pre-candidate"
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
	// configs are the configurations the local learner knows, from the
	// one that governs the slot after its applied one; applied is that
	// slot. Together they say which slots this proposer may propose in:
	// those up to applied+paxos.ConfigDelay (docs/design.md,
	// "Reconfiguration").
	configs paxos.History
	applied paxos.Slot

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

	// Campaign state, kept while leading: the phase-1 start slot, the
	// pre-vote grants, the acceptors sent a Prepare and those that
	// promised, and per slot the entry with the highest ballot among the
	// promises not yet re-proposed. top is the highest slot a promise
	// reported.
	from     paxos.Slot
	votes    []paxos.NodeID
	prepared []paxos.NodeID
	promised []paxos.NodeID
	found    map[paxos.Slot]paxos.Entry
	top      paxos.Slot
	// floor is the highest acceptor floor the promises reported: every
	// slot <= floor is chosen and must not be proposed again.
	floor paxos.Slot

	// Leader state.
	next       paxos.Slot // next free slot
	inflight   map[paxos.Slot]*proposal
	queue      []paxos.Command // waiting for a slot; kept by candidate and leader
	queueBytes int             // the command bytes in queue
	hbElapsed  int
	decidedBuf []paxos.Entry // chosen since the last Ready, to announce
	// Check-quorum: the acceptors heard from in this period and the last.
	heard, heardBefore map[paxos.NodeID]bool
	cqElapsed          int
	// progress is each learner's applied slot, from MsgProgress.
	progress map[paxos.NodeID]paxos.Slot
	// change is a configuration change waiting for a slot; changeSlot the
	// slot it was proposed in, until it is chosen.
	change     paxos.Value
	changeSlot paxos.Slot

	// Linearizable reads (ReadIndex): those waiting for the next
	// confirmation round, and the round in flight, if any.
	reads     []uint64
	readRound *readRound
	readSeq   paxos.Slot // confirmation rounds, numbered in the Slot field
	// now is the latest clock reading proposals brought (MsgPropose's
	// Time): the stamp of the batches proposed.
	now uint64
	// changes are the configuration changes this leader proposed, by
	// slot, until its learner applied them.
	changes map[paxos.Slot]paxos.Value

	rd paxos.Ready
}

// readRound is a confirmation round for the reads that arrived before it
// began: they are served once a quorum of every configuration the leader
// may depend on confirms it still leads (docs/design.md, "Reads").
type readRound struct {
	seq  paxos.Slot
	ids  []uint64
	acks []paxos.NodeID
	age  int // ticks since the Confirms were last sent
	// ticks since the round began: after ElectionTicks its reads are
	// answered as not confirmed, and the next round begins.
	ticks int
}

// New returns a proposer in the follower state. A proposer keeps no durable
// state of its own: after a restart it learns the chosen prefix from the
// local learner's MsgLearned and ballots from the acceptors' answers.
func New(cfg Config) (*Proposer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	p := &Proposer{cfg: cfg, logger: cfg.Logger, configs: cfg.Configs, decidedAbove: map[paxos.Slot]struct{}{}}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	p.logger = p.logger.With("node", cfg.ID, "role", "proposer")
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

// Inherited returns, while leading, the highest slot in which a value of an
// earlier leader may be chosen: those its phase 1 found, and those below
// its start. Until the learner has applied it, the state may still change
// by what earlier leaders proposed.
func (p *Proposer) Inherited() paxos.Slot { return max(p.top, p.floor, p.from-1) }

// State returns "follower", "pre-candidate", "candidate" or "leader".
func (p *Proposer) State() string { return p.state.String() }

// Configs returns the configurations this proposer knows.
func (p *Proposer) Configs() paxos.History { return p.configs }

// Reachable returns the members a leader heard from in its last two
// check-quorum periods, in ID order; nil when it does not lead.
func (p *Proposer) Reachable() []paxos.NodeID {
	if p.state != stateLeader {
		return nil
	}
	var out []paxos.NodeID
	for id := range p.heard {
		out = append(out, id)
	}
	for id := range p.heardBefore {
		if !p.heard[id] {
			out = append(out, id)
		}
	}
	for id := range p.progress {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Progress returns the applied slot learner id last reported to this
// leader, and whether it reported one.
func (p *Proposer) Progress(id paxos.NodeID) (paxos.Slot, bool) {
	s, ok := p.progress[id]
	return s, ok
}

// Step handles one message; see the MsgType constants for who sends what.
// Votes count only where a configuration says the sender is an acceptor, so
// messages from any member are taken; the transport admits only members.
func (p *Proposer) Step(m paxos.Message) error {
	switch m.Type {
	case paxos.MsgPropose:
		return p.handlePropose(m)
	case paxos.MsgLearned:
		if m.From != p.cfg.ID {
			return fmt.Errorf("proposer: Learned from %d, which is not this node", m.From)
		}
		p.applied = max(p.applied, m.Commit)
		p.advanceDecided(m.Commit)
		p.skipChosen()
		p.maybePropose()
		for s := range p.changes {
			if s <= p.applied {
				delete(p.changes, s)
			}
		}
		p.maybeConfirm()
		return nil
	case paxos.MsgPromise, paxos.MsgAccepted, paxos.MsgNack, paxos.MsgPreVoteReply, paxos.MsgHeartbeatAck, paxos.MsgProgress:
	case paxos.MsgHeartbeat, paxos.MsgDecide, paxos.MsgTimeoutNow:
		if m.Ballot.Node != m.From {
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
		p.hear(m.From)
		p.handleAccepted(m)
	case paxos.MsgNack:
		p.hear(m.From)
		p.handleNack(m)
	case paxos.MsgPreVoteReply:
		p.handlePreVoteReply(m)
	case paxos.MsgHeartbeatAck:
		p.hear(m.From)
		if p.state == stateLeader && p.ballot.Less(m.Ballot) {
			p.logger.Info("stepping down", "ballot", p.ballot, "peer", m.From, "promised", m.Ballot)
			p.becomeFollower(0, paxos.Ballot{})
		}
		p.handleConfirm(m)
	case paxos.MsgProgress:
		if p.progress != nil {
			p.progress[m.From] = max(p.progress[m.From], m.Commit)
		}
	case paxos.MsgHeartbeat:
		p.handleLeaderAlive(m)
	case paxos.MsgDecide:
		p.handleLeaderAlive(m)
		for _, e := range m.Entries {
			p.markDecided(e.Slot)
		}
	case paxos.MsgTimeoutNow:
		if p.state != stateLeader && p.isProposer() {
			p.logger.Info("leadership handed over", "peer", m.From, "ballot", m.Ballot)
			p.becomeCandidate()
		}
	}
	return nil
}

// Reconfigure gives the proposer the configurations its learner knows,
// after the learner applied a change, restored a snapshot or pruned ones
// that no longer govern. A candidate or leader asks the acceptors a new
// configuration adds for their promises.
func (p *Proposer) Reconfigure(h paxos.History) {
	p.configs = h
	// The learner keeps the configurations from the one that governs the
	// slot after its applied one, so it applied every slot before the
	// first it keeps. The Learned that says how far may come later in the
	// same flush; until then no slot it passed may be proposed or counted,
	// by configurations that govern only later ones.
	if first := h[0].Start; first > p.applied+1 {
		p.applied = first - 1
		p.advanceDecided(p.applied)
		p.skipChosen()
	}
	if p.state == stateCandidate || p.state == stateLeader {
		p.prepareAll()
	}
	p.maybeLeave()
	p.maybePropose()
}

// maybeLeave hands leadership over once a change that makes this node no
// proposer governs, and a proposer of the new configuration reported every
// slot before it (so that it can lead with the new configuration alone):
// until then the removed leader may be the only one that has them.
func (p *Proposer) maybeLeave() {
	if p.state != stateLeader || p.isProposer() || p.configs.Pending(p.applied) {
		return
	}
	latest := p.configs.Latest()
	for _, id := range latest.Membership().Proposers() {
		if at, ok := p.progress[id]; ok && at+1 >= latest.Start {
			p.handOver()
			return
		}
	}
}

// isProposer reports whether the newest configuration makes this node a
// proposer.
func (p *Proposer) isProposer() bool {
	return p.configs.Latest().Membership().Has(p.cfg.ID, paxos.RoleProposer)
}

func (p *Proposer) hear(id paxos.NodeID) {
	if p.state == stateLeader {
		p.heard[id] = true
	}
}

// Tick drives the failure detector, heartbeats and retransmission.
func (p *Proposer) Tick() {
	switch p.state {
	case stateFollower, statePreCandidate, stateCandidate:
		p.elapsed++
		if p.elapsed >= p.timeout {
			p.campaign()
		}
	case stateLeader:
		p.hbElapsed++
		if p.hbElapsed >= p.cfg.HeartbeatTicks {
			p.bcastHeartbeat()
		}
		p.maybeRetransmit()
		p.retransmitConfirm()
		p.checkQuorum()
		p.maybePromote()
		p.maybeLeave()
	}
}

// Ready returns the work produced since the last Advance.
func (p *Proposer) Ready() paxos.Ready {
	p.bcastDecided()
	return p.rd
}

// members returns every member of the configurations that govern the slots
// from s on, in ID order.
func (p *Proposer) members(s paxos.Slot, r paxos.Role) []paxos.NodeID {
	return p.configs.From(s).Members(r)
}

// bcastDecided announces the slots chosen since the last call with one
// Decide per learner, this node's own included, all sharing the entries. It
// runs before every role change too, so a Decide always carries the ballot
// that chose its entries.
func (p *Proposer) bcastDecided() {
	if len(p.decidedBuf) == 0 {
		return
	}
	// NB: the learners of every configuration from the lowest slot: the
	// buffer is in the order slots were chosen, not in slot order, and a
	// learner of a configuration that ends before its first entry's slot
	// needs the earlier entries (seed 71 lost slot 57 so).
	low := p.decidedBuf[0].Slot
	for _, e := range p.decidedBuf[1:] {
		low = min(low, e.Slot)
	}
	for _, to := range p.members(low, paxos.RoleLearner) {
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

// campaign starts an election after a timeout: first a pre-vote, so that a
// member that restarts or returns from a partition raises no ballot while
// the acceptors still hear a leader. A member that is not a proposer of the
// newest configuration, or whose learner lags far behind what it knows is
// chosen (it could not propose until it caught up), does not campaign.
func (p *Proposer) campaign() {
	if !p.isProposer() || p.decided > p.applied+paxos.ConfigDelay/2 {
		p.becomeFollower(p.leader, p.leaderBallot)
		return
	}
	p.dropLeaderState()
	p.state = statePreCandidate
	p.leader, p.leaderBallot = 0, paxos.Ballot{}
	p.from = p.decided + 1
	p.votes = p.votes[:0]
	p.resetTimeout()
	b := paxos.Ballot{Round: max(p.maxSeen.Round, p.ballot.Round) + 1, Node: p.cfg.ID}
	for _, to := range p.configs.At(p.from).Membership().Acceptors() {
		p.send(paxos.Message{Type: paxos.MsgPreVote, To: to, Ballot: b, Slot: p.from})
	}
}

func (p *Proposer) handlePreVoteReply(m paxos.Message) {
	if p.state != statePreCandidate || m.Slot != p.from || !m.Grant || slices.Contains(p.votes, m.From) {
		return
	}
	p.votes = append(p.votes, m.From)
	if p.configs.At(p.from).Membership().IsQuorum(p.votes) {
		p.becomeCandidate()
	}
}

// becomeCandidate starts phase 1 for every slot from the first one not known
// to be chosen, with a ballot above every ballot seen (§2.2, §3).
func (p *Proposer) becomeCandidate() {
	queue, queueBytes := p.queue, p.queueBytes
	p.dropLeaderState()
	p.queue, p.queueBytes = queue, queueBytes
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
	p.top = p.from - 1
	p.resetTimeout()
	p.logger.Info("campaigning", "ballot", p.ballot, "slot", p.from)
	p.prepareAll()
}

// prepareAll sends a Prepare to every acceptor of a configuration that
// governs a slot from the phase-1 start on and was not sent one at this
// ballot. A slot may be proposed in only once a quorum of its own
// configuration promised (canPropose).
func (p *Proposer) prepareAll() {
	for _, to := range p.members(p.from, paxos.RoleAcceptor) {
		if !slices.Contains(p.prepared, to) {
			p.prepared = append(p.prepared, to)
			p.send(paxos.Message{Type: paxos.MsgPrepare, To: to, Ballot: p.ballot, Slot: p.from})
		}
	}
}

// handlePromise collects phase 1b answers; a quorum of the configuration of
// the phase-1 start makes this proposer the leader. Promises that come later
// still count, for the slots of configurations that need them.
func (p *Proposer) handlePromise(m paxos.Message) error {
	if (p.state != stateCandidate && p.state != stateLeader) || m.Ballot != p.ballot || m.Slot != p.from {
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
	p.hear(m.From)
	for _, e := range m.Entries {
		if p.state == stateLeader && e.Slot < p.next {
			// NB: already proposed, with the highest value a quorum of
			// the slot's configuration reported; a value from a wider set
			// of acceptors is no more right.
			continue
		}
		if cur, ok := p.found[e.Slot]; !ok || cur.Ballot.Less(e.Ballot) {
			p.found[e.Slot] = e
		}
		p.top = max(p.top, e.Slot)
	}
	p.floor = max(p.floor, m.Commit)
	p.promised = append(p.promised, m.From)
	switch {
	case p.state == stateCandidate && p.configs.At(p.from).Membership().IsQuorum(p.promised):
		p.becomeLeader()
	case p.state == stateLeader:
		p.applyFloor()
		p.maybePropose()
	}
	return nil
}

// becomeLeader ends phase 1. From the phase-1 start on, it re-proposes with
// its own ballot the highest-ballot value reported for each slot up to the
// highest slot any promise mentioned, filling holes with no-ops (§3), then
// new commands; each slot only once a quorum of its configuration promised
// and its configuration is known (maybePropose). Slots at or below an
// acceptor's floor are chosen already and skipped: the acceptor no longer
// reports their values, so a no-op there could overwrite a chosen value.
func (p *Proposer) becomeLeader() {
	p.state = stateLeader
	p.leader, p.leaderBallot = p.cfg.ID, p.ballot
	p.inflight = make(map[paxos.Slot]*proposal, 2*p.cfg.Window)
	p.heard, p.heardBefore = map[paxos.NodeID]bool{}, map[paxos.NodeID]bool{}
	p.progress = map[paxos.NodeID]paxos.Slot{}
	p.cqElapsed = 0
	for _, id := range p.promised {
		p.heard[id] = true
	}
	p.next = p.from
	p.applyFloor()
	p.logger.Info("became leader", "ballot", p.ballot, "slot", p.next, "recovered", int(p.top)-int(p.next)+1)
	p.bcastHeartbeat()
	p.maybePropose()
}

// applyFloor takes in that every slot up to the promises' floor is chosen.
func (p *Proposer) applyFloor() {
	p.advanceDecided(p.floor)
	p.skipChosen()
}

// skipChosen makes a leader give up the slots it knows to be chosen: it
// neither proposes in them nor counts votes for them. NB: this is not only
// economy. The configurations a proposer knows begin after its learner's
// applied slot; one that governed a slot at or below it may be forgotten,
// so a vote there could be counted against the wrong configuration.
func (p *Proposer) skipChosen() {
	if p.state != stateLeader {
		return
	}
	p.next = max(p.next, p.decided+1)
	for s := range p.found {
		if s <= p.decided {
			delete(p.found, s)
		}
	}
	for s := range p.inflight {
		if s <= p.decided {
			p.dropProposal(s)
		}
	}
}

func (p *Proposer) handlePropose(m paxos.Message) error {
	if p.state == stateFollower || p.state == statePreCandidate {
		return &paxos.NotLeaderError{Leader: p.leader}
	}
	size := 0
	for _, c := range m.Cmds {
		size += len(c.Data)
	}
	// NB: an empty queue takes anything, so that one command larger than
	// MaxQueueBytes is not refused for ever.
	if len(p.queue)+len(m.Cmds) > p.cfg.MaxQueue || (len(p.queue) > 0 && p.queueBytes+size > p.cfg.MaxQueueBytes) {
		return paxos.ErrOverloaded
	}
	p.queue = append(p.queue, m.Cmds...)
	p.queueBytes += size
	p.now = max(p.now, m.Time)
	p.maybePropose()
	return nil
}

// ErrChangePending is returned for a configuration change proposed while
// another is on its way: one change at a time.
var ErrChangePending = errors.New("proposer: a configuration change is already in progress; wait for it to take effect")

// ProposeChange proposes c, computed from the newest configuration, as the
// next configuration. It returns a *paxos.NotLeaderError when this node does
// not lead, and ErrChangePending while another change is proposed, chosen
// but not yet in effect, or may be (the local learner lags).
func (p *Proposer) ProposeChange(c paxos.Config) error {
	if p.state != stateLeader {
		return &paxos.NotLeaderError{Leader: p.leader}
	}
	if p.changePending() {
		return ErrChangePending
	}
	c.Base = p.configs.Latest().Made
	p.change = paxos.EncodeConfig(c)
	p.maybePropose()
	return nil
}

func (p *Proposer) changePending() bool {
	return p.change != nil || p.changeSlot != 0 || p.configs.Pending(p.applied) || p.applied < p.decided
}

// canPropose reports whether the leader may propose in slot s: its
// configuration is known (every slot up to s-ConfigDelay is applied here)
// and a quorum of that configuration promised this ballot.
func (p *Proposer) canPropose(s paxos.Slot) bool {
	return s <= p.applied+paxos.ConfigDelay && p.configs.At(s).Membership().IsQuorum(p.promised)
}

// maybePropose fills free window places: first with the values phase 1
// recovered (no-ops in holes), then with a configuration change, then with
// batches of queued commands; and while a chosen change is not yet in
// effect, with no-ops, so that it takes effect without waiting for
// traffic. Batching is adaptive: a lone command goes out at once, and
// commands that arrive while the window is full share the next free slot.
func (p *Proposer) maybePropose() {
	if p.state != stateLeader {
		return
	}
	for len(p.inflight) < p.cfg.Window && p.canPropose(p.next) {
		var v paxos.Value
		if e, ok := p.found[p.next]; ok {
			v = e.Value
			delete(p.found, p.next)
		} else if p.next <= p.top {
			// a hole: the no-op
		} else if p.change != nil {
			v, p.change, p.changeSlot = p.change, nil, p.next
		} else if len(p.queue) > 0 {
			v = p.takeBatch()
		} else if p.configs.Latest().Start <= p.next {
			return
		}
		p.propose(p.next, v)
		p.next++
	}
}

// takeBatch takes the next batch of queued commands.
func (p *Proposer) takeBatch() paxos.Value {
	n, size := 0, 0
	for n < len(p.queue) && n < p.cfg.MaxBatch {
		next := size + len(p.queue[n].Data)
		if n > 0 && next > p.cfg.MaxBatchBytes {
			break
		}
		size = next
		n++
	}
	v := paxos.EncodeBatchAt(p.now, p.queue[:n])
	p.queueBytes -= size
	clear(p.queue[:n]) // let the command bytes be collected
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	}
	return v
}

// propose starts phase 2 for slot s with value v at the leader's ballot.
func (p *Proposer) propose(s paxos.Slot, v paxos.Value) {
	if _, ok := p.inflight[s]; ok {
		panic(fmt.Sprintf("proposer: slot %d proposed twice at ballot %v", s, p.ballot))
	}
	p.inflight[s] = &proposal{value: v}
	if v.IsConfig() {
		if p.changes == nil {
			p.changes = map[paxos.Slot]paxos.Value{}
		}
		p.changes[s] = v
	}
	for _, to := range p.configs.At(s).Membership().Acceptors() {
		p.send(paxos.Message{Type: paxos.MsgAccept, To: to, Ballot: p.ballot, Slot: s, Value: v})
	}
}

// handleAccepted counts phase 2b answers; a quorum of the slot's
// configuration chooses the slot.
func (p *Proposer) handleAccepted(m paxos.Message) {
	if p.state != stateLeader || m.Ballot != p.ballot {
		return
	}
	pr := p.inflight[m.Slot]
	if pr == nil || slices.Contains(pr.acks, m.From) {
		return
	}
	pr.acks = append(pr.acks, m.From)
	if !p.configs.At(m.Slot).Membership().IsQuorum(pr.acks) {
		return
	}
	p.dropProposal(m.Slot)
	p.decidedBuf = append(p.decidedBuf, paxos.Entry{Slot: m.Slot, Ballot: p.ballot, Value: pr.value})
	p.markDecided(m.Slot)
	p.maybePropose()
}

func (p *Proposer) dropProposal(s paxos.Slot) {
	delete(p.inflight, s)
	if s == p.changeSlot {
		p.changeSlot = 0
	}
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
			p.floor = max(p.floor, m.Commit)
			p.applyFloor()
			p.maybePropose()
		}
	}
	if (p.state == stateCandidate || p.state == stateLeader) && p.ballot.Less(m.Ballot) {
		p.logger.Info("stepping down", "ballot", p.ballot, "peer", m.From, "promised", m.Ballot)
		p.becomeFollower(0, paxos.Ballot{})
	}
}

// handleLeaderAlive notes a heartbeat or decision from a leader. A
// pre-candidate that hears one gives up its campaign: the leader lives.
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
	case statePreCandidate:
		p.becomeFollower(m.From, m.Ballot)
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
	p.queue, p.queueBytes = nil, 0
	p.found = nil
	p.floor = 0
	p.promised = p.promised[:0]
	p.prepared = p.prepared[:0]
	p.change, p.changeSlot = nil, 0
	p.changes = nil
	p.failReads()
	// NB: progress is kept: a leader that handed over because a change
	// removed it still answers that change by it (server.Member.governs).
	p.heard, p.heardBefore = nil, nil
}

func (p *Proposer) bcastHeartbeat() {
	p.hbElapsed = 0
	for _, to := range p.members(p.decided+1, paxos.RoleAll) {
		p.send(paxos.Message{Type: paxos.MsgHeartbeat, To: to, Ballot: p.ballot, Commit: p.decided})
	}
}

// checkQuorum steps down a leader that heard from no quorum of acceptors
// for an election timeout, so that its clients are told at once that
// nobody leads instead of waiting for an answer that cannot come. A leader
// still missing the promises of a configuration it needs after as long
// campaigns again, which asks every acceptor anew.
func (p *Proposer) checkQuorum() {
	if p.cqElapsed++; p.cqElapsed < p.cfg.ElectionTicks {
		return
	}
	p.cqElapsed = 0
	var heard []paxos.NodeID
	for id := range p.heard {
		heard = append(heard, id)
	}
	p.heardBefore, p.heard = p.heard, map[paxos.NodeID]bool{}
	if !p.configs.At(p.next).Membership().IsQuorum(heard) {
		p.logger.Warn("stepping down: no quorum of acceptors answered for an election timeout", "ballot", p.ballot, "heard", heard)
		p.becomeFollower(0, paxos.Ballot{})
		return
	}
	if p.next <= p.applied+paxos.ConfigDelay && !p.configs.At(p.next).Membership().IsQuorum(p.promised) {
		p.logger.Info("campaigning again: a quorum of a new configuration has not promised", "ballot", p.ballot, "slot", p.next)
		p.becomeCandidate()
		return
	}
	// Reads count only acceptors whose promise this leader holds (see
	// handleConfirm): when those it still hears are no quorum, no read
	// could be confirmed, though writes go on with acceptors that came
	// back since the election. A new campaign gets their promises.
	var promisedHeard []paxos.NodeID
	for _, id := range heard {
		if slices.Contains(p.promised, id) {
			promisedHeard = append(promisedHeard, id)
		}
	}
	if !p.configs.At(p.next).Membership().IsQuorum(promisedHeard) {
		p.logger.Info("campaigning again: the acceptors that promised and still answer are no quorum", "ballot", p.ballot, "heard", heard, "promised", p.promised)
		p.becomeCandidate()
	}
}

// maybePromote proposes the promotion of a joining member whose learner came
// within PromoteLag slots of this leader's, when no other change is on its
// way.
func (p *Proposer) maybePromote() {
	if p.changePending() {
		return
	}
	latest := p.configs.Latest()
	for i, peer := range latest.Peers {
		if peer.Target == 0 {
			continue
		}
		at, ok := p.progress[peer.ID]
		if !ok || at+paxos.Slot(p.cfg.PromoteLag) < p.applied {
			continue
		}
		peers := slices.Clone(latest.Peers)
		peers[i].Roles, peers[i].Target = peer.Target, 0
		c, err := paxos.NewConfig(0, 0, peers, latest.Removed)
		if err != nil {
			p.logger.Error("promotion not proposed", "member", peer.ID, "err", err)
			continue
		}
		p.logger.Info("promoting a member that caught up", "member", peer.ID, "roles", peer.Target, "applied", at)
		_ = p.ProposeChange(c) // checked above: this node leads, nothing pending
		return
	}
}

// ErrTransfer reports a leadership transfer that cannot be done.
var ErrTransfer = errors.New("proposer: cannot hand leadership over")

// TransferTo hands leadership to proposer id: this leader stops taking
// commands and tells id to campaign at once, skipping the pre-vote. If id
// does not take over, a new leader is elected after an election timeout.
func (p *Proposer) TransferTo(id paxos.NodeID) error {
	switch {
	case p.state != stateLeader:
		return &paxos.NotLeaderError{Leader: p.leader}
	case id == p.cfg.ID:
		return fmt.Errorf("%w: node %d leads already", ErrTransfer, id)
	case !p.configs.Latest().Membership().Has(id, paxos.RoleProposer):
		return fmt.Errorf("%w: node %d is not a proposer", ErrTransfer, id)
	}
	p.logger.Info("handing leadership over", "to", id, "ballot", p.ballot)
	b := p.ballot
	p.becomeFollower(id, paxos.Ballot{})
	p.send(paxos.Message{Type: paxos.MsgTimeoutNow, To: id, Ballot: b})
	return nil
}

// HandOver passes leadership to the proposer, other than this one, that
// reported the furthest progress, and returns it; 0 when this node does not
// lead or heard from no other proposer (it then keeps leading). A leader
// about to stop calls it, so that its clients are not left without one
// for an election timeout.
func (p *Proposer) HandOver() paxos.NodeID {
	if p.state != stateLeader {
		return 0
	}
	var best paxos.NodeID
	var bestAt paxos.Slot
	for _, id := range p.configs.Latest().Membership().Proposers() {
		if at, ok := p.progress[id]; ok && id != p.cfg.ID && (best == 0 || at > bestAt) {
			best, bestAt = id, at
		}
	}
	if best != 0 {
		_ = p.TransferTo(best) // leads, and best is a proposer
	}
	return best
}

// StepDown makes a leader or candidate a follower that knows no leader, at
// once; messages it already produced (a hand-over's TimeoutNow) still go
// out. For a member that stops taking part (its disk is full): it must
// not go on claiming to lead.
func (p *Proposer) StepDown() {
	if p.state == stateLeader || p.state == stateCandidate {
		p.logger.Info("stepping down", "ballot", p.ballot)
		p.becomeFollower(0, paxos.Ballot{})
	}
}

// handOver passes leadership on when the newest configuration no longer
// makes this node a proposer, or steps down if there is nobody to pass it
// to.
func (p *Proposer) handOver() {
	if p.HandOver() == 0 {
		p.logger.Info("stepping down: no longer a proposer", "ballot", p.ballot)
		p.becomeFollower(0, paxos.Ballot{})
	}
}

// LeaderBallot returns the ballot of the leader a follower heeds, zero
// until it heard from one.
func (p *Proposer) LeaderBallot() paxos.Ballot { return p.leaderBallot }

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
		for _, to := range p.configs.At(s).Membership().Acceptors() {
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

// ReadIndex asks the leader to confirm a linearizable read, tagged id: the
// answer comes in a later Ready's Reads. Reads that arrive together share one
// confirmation round. It returns a *paxos.NotLeaderError when this proposer
// does not lead, and paxos.ErrOverloaded when MaxQueue reads wait.
//
// Why a read served at the answer's Index is linearizable: docs/design.md,
// "Reads".
func (p *Proposer) ReadIndex(id uint64) error {
	if p.state != stateLeader {
		return &paxos.NotLeaderError{Leader: p.leader}
	}
	if len(p.reads) >= p.cfg.MaxQueue {
		return paxos.ErrOverloaded
	}
	p.reads = append(p.reads, id)
	p.startRead()
	return nil
}

// startRead begins a confirmation round for the waiting reads, unless one
// is in flight: they wait for it to end.
func (p *Proposer) startRead() {
	if p.readRound != nil || len(p.reads) == 0 || p.state != stateLeader {
		return
	}
	if p.readSeq == 0 {
		// NB: rounds are numbered from a random start, so that an answer
		// to a Confirm of an earlier incarnation of this node, still in
		// flight, cannot pass for one to this incarnation's round.
		p.readSeq = paxos.Slot(p.cfg.Rand.Uint64() >> 1)
	}
	p.readSeq++
	p.readRound = &readRound{seq: p.readSeq, ids: p.reads}
	p.reads = nil
	p.sendConfirm()
}

// sendConfirm asks every acceptor of the round's configurations that has
// not confirmed it yet.
func (p *Proposer) sendConfirm() {
	r := p.readRound
	r.age = 0
	var to []paxos.NodeID
	for _, c := range p.readConfigs() {
		to = append(to, c.Membership().Acceptors()...)
	}
	slices.Sort(to)
	for _, id := range slices.Compact(to) {
		if !slices.Contains(r.acks, id) {
			p.send(paxos.Message{Type: paxos.MsgConfirm, To: id, Ballot: p.ballot, Slot: r.seq})
		}
	}
}

// retransmitConfirm asks again, after RetransmitTicks, the acceptors that
// have not confirmed the round in flight.
func (p *Proposer) retransmitConfirm() {
	r := p.readRound
	if r == nil {
		return
	}
	if r.ticks++; r.ticks >= p.cfg.ElectionTicks {
		for _, id := range r.ids {
			p.rd.Reads = append(p.rd.Reads, paxos.ReadState{ID: id})
		}
		p.readRound = nil
		p.startRead()
		return
	}
	if r.age++; r.age >= p.cfg.RetransmitTicks {
		p.sendConfirm()
	}
}

// readConfigs returns every configuration that may govern a slot in which
// a value this leader does not know could have been chosen: those its
// learner knows from the slot after the applied one, and those that its
// own proposals not yet applied would make (and values phase 1 reported,
// which it will propose).
func (p *Proposer) readConfigs() []paxos.Config {
	out := slices.Clone(p.configs.From(p.applied + 1))
	add := func(s paxos.Slot, v paxos.Value) {
		if v.IsConfig() {
			if c, err := paxos.DecodeConfig(v, s); err == nil {
				out = append(out, c)
			}
		}
	}
	for s, v := range p.changes {
		add(s, v)
	}
	for s, e := range p.found {
		add(s, e.Value)
	}
	return out
}

// handleConfirm counts an acceptor's answer to the round in flight. It
// counts only at this leader's own ballot and from an acceptor whose
// promise this leader received: then every value it had accepted is known
// here.
func (p *Proposer) handleConfirm(m paxos.Message) {
	r := p.readRound
	if r == nil || m.Slot != r.seq || m.Ballot != p.ballot || p.state != stateLeader ||
		!slices.Contains(p.promised, m.From) || slices.Contains(r.acks, m.From) {
		return
	}
	r.acks = append(r.acks, m.From)
	p.maybeConfirm()
}

// maybeConfirm ends the round in flight once its answers form a quorum of
// every configuration the reads depend on. It waits for the learner to
// apply every slot chosen before this leader's phase 1 and up to the
// acceptors' floor: values there, chosen by others, may change the
// configurations, and only the learner knows them.
func (p *Proposer) maybeConfirm() {
	r := p.readRound
	if r == nil || p.state != stateLeader || p.applied+1 < p.from || p.applied < p.floor {
		return
	}
	for _, c := range p.readConfigs() {
		if !c.Membership().IsQuorum(r.acks) {
			return
		}
	}
	// Every slot in which a value may have been chosen before the round
	// began is at or below the highest slot proposed or reported.
	index := max(p.next-1, p.top, p.decided)
	for _, id := range r.ids {
		p.rd.Reads = append(p.rd.Reads, paxos.ReadState{ID: id, Index: index, OK: true})
	}
	p.readRound = nil
	p.startRead()
}

// failReads answers every waiting read with leadership lost.
func (p *Proposer) failReads() {
	var ids []uint64
	if p.readRound != nil {
		ids = p.readRound.ids
	}
	for _, id := range append(ids, p.reads...) {
		p.rd.Reads = append(p.rd.Reads, paxos.ReadState{ID: id})
	}
	p.reads, p.readRound = nil, nil
}
