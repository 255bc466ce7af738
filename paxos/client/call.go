package client

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
)

// Router knows a cluster's client endpoints and which of them leads, as
// far as the answers so far tell. One Router serves every call of a Client.
// It is safe for concurrent use.
type Router struct {
	mu        sync.Mutex
	endpoints []string // configured, then learned from redirects
	leader    string   // where the last command succeeded or was redirected
	next      int      // rotation through endpoints
}

// NewRouter returns a router over endpoints (host:port each; blanks and
// repeats are dropped).
func NewRouter(endpoints []string) (*Router, error) {
	var eps []string
	for _, e := range endpoints {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(e); err != nil {
			return nil, fmt.Errorf("client: endpoint %q is not host:port: %w", e, err)
		}
		if !slices.Contains(eps, e) {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("client: no endpoints given; pass members' client addresses, like 127.0.0.1:7001")
	}
	return &Router{endpoints: eps}, nil
}

// Endpoints returns every endpoint known, configured and learned.
func (r *Router) Endpoints() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.endpoints)
}

// first returns the endpoint a new call tries first: the leader if known.
func (r *Router) first() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leader != "" {
		return r.leader
	}
	return r.endpoints[r.next%len(r.endpoints)]
}

// after returns the endpoint to try after ep failed, and forgets ep as the
// leader.
func (r *Router) after(ep string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leader == ep {
		r.leader = ""
	}
	i := slices.Index(r.endpoints, ep)
	r.next = (i + 1) % len(r.endpoints)
	return r.endpoints[r.next]
}

func (r *Router) setLeader(ep string) {
	r.mu.Lock()
	r.leader = ep
	r.mu.Unlock()
}

// learn adds an endpoint a member redirected to.
func (r *Router) learn(ep string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.endpoints, ep) {
		r.endpoints = append(r.endpoints, ep)
	}
}

// Retry pacing: the wait after a failed attempt starts at minBackoff and
// doubles up to maxBackoff. A redirect to a named leader is followed at
// once, up to maxRedirects in a row (members pointing at each other have
// stale news, so then the call waits like any other).
const (
	minBackoff   = 20 * time.Millisecond
	maxBackoff   = 500 * time.Millisecond
	maxRedirects = 3
)

// Call is the retry state of one request: where to send the next attempt,
// whether an attempt so far may have been applied, and how long to wait
// before trying again. Every attempt carries the same request, so a command
// retried with its (session, seq) is applied at most once.
//
// The Client drives a Call over TCP with the wall clock; the simulator
// drives the same Call over its simulated network with virtual time, so
// the retry rules are tested under its faults. A Call is not safe for
// concurrent use.
type Call struct {
	r         *Router
	req       clientapi.Request
	ep        string
	tried     []string
	maybe     bool // some attempt may have been applied
	last      error
	backoff   time.Duration
	redirects int             // followed since the last wait
	setup     map[string]bool // endpoints that failed with ErrSetup
	attempts  int
	answer    clientapi.Response
}

// NewCall starts a call of req through r.
func NewCall(r *Router, req clientapi.Request) *Call {
	return &Call{r: r, req: req, ep: r.first(), backoff: minBackoff}
}

// Answer returns the response that ended the call with CodeOK.
func (c *Call) Answer() clientapi.Response { return c.answer }

// Request returns the request every attempt sends.
func (c *Call) Request() clientapi.Request { return c.req }

// Endpoint returns where the next attempt goes.
func (c *Call) Endpoint() string { return c.ep }

// Handle takes the outcome of the attempt sent to Endpoint: the member's
// response, or err when none came, in which case sent says whether the
// request may have reached the member (it was written, or the write's fate
// is unknown). It returns done when the call is over, with the answer's
// data or its final error; otherwise wait is how long to pause before the
// next attempt (zero: at once).
func (c *Call) Handle(resp clientapi.Response, sent bool, err error) (data []byte, done bool, wait time.Duration, final error) {
	c.attempts++
	ep := c.ep
	if !slices.Contains(c.tried, ep) {
		c.tried = append(c.tried, ep)
	}
	if err != nil {
		c.maybe = c.maybe || (sent && c.changes())
		c.last = fmt.Errorf("%s: %w", ep, err)
		if errors.Is(err, ErrSetup) {
			// NB: retrying cannot help; once every member known failed
			// so, the call is over.
			if c.setup == nil {
				c.setup = map[string]bool{}
			}
			c.setup[ep] = true
			if eps := c.r.Endpoints(); !c.maybe && !slices.ContainsFunc(eps, func(e string) bool { return !c.setup[e] }) {
				return nil, true, 0, fmt.Errorf("%w: %w", ErrNotApplied, c.last)
			}
		}
		c.ep = c.r.after(ep)
		return nil, false, c.pause(), nil
	}
	switch resp.Code {
	case clientapi.CodeOK:
		if c.leaderOnly() {
			c.r.setLeader(ep)
		}
		c.answer = resp
		return resp.Data, true, 0, nil
	case clientapi.CodeNotLeader:
		c.last = fmt.Errorf("%s: %s", ep, resp.Message)
		if resp.LeaderAddr == "" || resp.LeaderAddr == ep {
			c.ep = c.r.after(ep)
			return nil, false, c.pause(), nil
		}
		c.r.learn(resp.LeaderAddr)
		c.ep = resp.LeaderAddr
		if c.redirects++; c.redirects <= maxRedirects {
			return nil, false, 0, nil
		}
	case clientapi.CodeTimeout:
		c.maybe = c.maybe || c.changes()
		c.last = fmt.Errorf("%s: %s", ep, resp.Message)
	case clientapi.CodeOverloaded, clientapi.CodeUnavailable:
		c.last = fmt.Errorf("%s: %s", ep, resp.Message)
		c.ep = c.r.after(ep)
	case clientapi.CodeStale:
		return nil, true, 0, fmt.Errorf("%w: %s", ErrUnknownOutcome, resp.Message)
	case clientapi.CodeSessionExpired:
		if c.maybe {
			return nil, true, 0, fmt.Errorf("%w: an earlier attempt may have been applied, and then %s answered: %s", ErrUnknownOutcome, ep, resp.Message)
		}
		return nil, true, 0, fmt.Errorf("%w: %s: %s", ErrSessionExpired, ep, resp.Message)
	case clientapi.CodePermissionDenied:
		if c.maybe {
			return nil, true, 0, fmt.Errorf("%w: an earlier attempt may have been applied, and then %s answered: %s", ErrUnknownOutcome, ep, resp.Message)
		}
		return nil, true, 0, fmt.Errorf("%w: %s: %s", ErrPermissionDenied, ep, resp.Message)
	default: // CodeBadRequest
		return nil, true, 0, fmt.Errorf("%w: refused by %s: %s", ErrNotApplied, ep, resp.Message)
	}
	return nil, false, c.pause(), nil
}

// changes reports whether the request can change the cluster's state, so
// that an attempt without an answer leaves its outcome unknown. A read
// changes nothing: one that got no answer was simply not answered.
func (c *Call) changes() bool {
	switch c.req.Kind {
	case clientapi.ReqRead, clientapi.ReqQuery, clientapi.ReqStatus, clientapi.ReqSnapshot, clientapi.ReqWatch, clientapi.ReqKeepAlive:
		return false
	}
	return true
}

// leaderOnly reports whether only the leader answers the request, so that
// the member that did is the leader.
func (c *Call) leaderOnly() bool {
	switch c.req.Kind {
	case clientapi.ReqQuery, clientapi.ReqStatus, clientapi.ReqSnapshot, clientapi.ReqWatch:
		return false
	}
	return true
}

// pause returns the wait before the next attempt and lengthens the one
// after it.
func (c *Call) pause() time.Duration {
	w := c.backoff
	c.backoff = min(2*c.backoff, maxBackoff)
	c.redirects = 0
	return w
}

// Expire gives the call up because its deadline passed; cause says why
// (the context's error). The error wraps ErrUnknownOutcome if some attempt
// may have been applied, ErrNotApplied otherwise, and names the members
// tried and the last failure.
func (c *Call) Expire(cause error) error {
	kind := ErrNotApplied
	if c.maybe {
		kind = ErrUnknownOutcome
	}
	if c.last == nil {
		return fmt.Errorf("%w: %w before any attempt", kind, cause)
	}
	return fmt.Errorf("%w: %w after %d attempts (tried %s); last error: %w", kind, cause, c.attempts, strings.Join(c.tried, ", "), c.last)
}
