package client

import (
	"errors"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
)

// The retry rules, attempt by attempt, without a network.

func newTestCall(t *testing.T, eps ...string) (*Router, *Call) {
	t.Helper()
	r, err := NewRouter(eps)
	if err != nil {
		t.Fatal(err)
	}
	return r, NewCall(r, clientapi.Request{Kind: clientapi.ReqCommand, Session: 7, Seq: 3, Data: []byte("x")})
}

var errBroken = errors.New("connection reset")

func TestCallOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resp     clientapi.Response
		sent     bool
		err      error
		wantDone bool
		wantErr  error // of the answer, or of Expire after it
		wantNext string
	}{
		{"answered", clientapi.Response{Code: clientapi.CodeOK}, true, nil, true, nil, "a:1"},
		{"refused", clientapi.Response{Code: clientapi.CodeBadRequest}, true, nil, true, ErrNotApplied, "a:1"},
		{"stale", clientapi.Response{Code: clientapi.CodeStale}, true, nil, true, ErrUnknownOutcome, "a:1"},
		{"timed out at the member", clientapi.Response{Code: clientapi.CodeTimeout}, true, nil, false, ErrUnknownOutcome, "a:1"},
		{"overloaded", clientapi.Response{Code: clientapi.CodeOverloaded}, true, nil, false, ErrNotApplied, "b:1"},
		{"unavailable", clientapi.Response{Code: clientapi.CodeUnavailable}, true, nil, false, ErrNotApplied, "b:1"},
		{"no leader known", clientapi.Response{Code: clientapi.CodeNotLeader}, true, nil, false, ErrNotApplied, "b:1"},
		{"not sent", clientapi.Response{}, false, errBroken, false, ErrNotApplied, "b:1"},
		{"sent, connection lost", clientapi.Response{}, true, errBroken, false, ErrUnknownOutcome, "b:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newTestCall(t, "a:1", "b:1")
			_, done, _, err := c.Handle(tc.resp, tc.sent, tc.err)
			if done != tc.wantDone {
				t.Fatalf("done = %v, want %v", done, tc.wantDone)
			}
			if !done {
				err = c.Expire(errors.New("deadline"))
			}
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !done && c.Endpoint() != tc.wantNext {
				t.Fatalf("next attempt goes to %s, want %s", c.Endpoint(), tc.wantNext)
			}
		})
	}
}

func TestCallRedirectsAtOnceThenPauses(t *testing.T) {
	_, c := newTestCall(t, "a:1")
	other := map[string]string{"a:1": "b:1", "b:1": "a:1"}
	for i := range maxRedirects {
		to := other[c.Endpoint()]
		_, done, wait, _ := c.Handle(clientapi.Response{Code: clientapi.CodeNotLeader, LeaderAddr: to}, true, nil)
		if done || wait != 0 || c.Endpoint() != to {
			t.Fatalf("redirect %d: done %v, wait %v, next %s; want an immediate retry at %s", i+1, done, wait, c.Endpoint(), to)
		}
	}
	if _, _, wait, _ := c.Handle(clientapi.Response{Code: clientapi.CodeNotLeader, LeaderAddr: other[c.Endpoint()]}, true, nil); wait == 0 {
		t.Fatalf("redirect %d in a row was followed at once: members that point at each other make the client spin", maxRedirects+1)
	}
	if c.Request().Seq != 3 || c.Request().Session != 7 {
		t.Fatalf("the request changed: %+v", c.Request())
	}
}

func TestCallBackoffDoublesAndCaps(t *testing.T) {
	_, c := newTestCall(t, "a:1")
	var waits []time.Duration
	for range 8 {
		_, _, w, _ := c.Handle(clientapi.Response{Code: clientapi.CodeTimeout}, true, nil)
		waits = append(waits, w)
	}
	want := []time.Duration{20, 40, 80, 160, 320, 500, 500, 500}
	for i := range want {
		if waits[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", waits, want)
		}
	}
}

func TestCallLearnsTheLeader(t *testing.T) {
	r, c := newTestCall(t, "a:1", "b:1")
	c.Handle(clientapi.Response{Code: clientapi.CodeNotLeader, LeaderAddr: "c:1"}, true, nil)
	if _, done, _, _ := c.Handle(clientapi.Response{Code: clientapi.CodeOK}, true, nil); !done {
		t.Fatal("not done after an answer")
	}
	if next := NewCall(r, clientapi.Request{}); next.Endpoint() != "c:1" {
		t.Fatalf("the next call starts at %s, want the leader c:1", next.Endpoint())
	}
	if eps := r.Endpoints(); len(eps) != 3 {
		t.Fatalf("endpoints %v: the redirect's address was not learned", eps)
	}
}
