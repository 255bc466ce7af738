package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// LeaseID names a lease.
type LeaseID uint64

// ErrLeaseNotFound is returned for a lease that is not granted: it expired,
// was revoked, or never was. Its keys are gone.
var ErrLeaseNotFound = errors.New("client: lease not found")

// Lease is a lease as Leases lists it: its TTL and how many keys are
// attached to it.
type Lease struct {
	ID   LeaseID
	TTL  time.Duration
	Keys uint64
}

// Grant grants a lease whose keys are deleted unless it is kept alive
// within ttl (rounded up to whole seconds, statemachine.MinLeaseTTL to
// MaxLeaseTTL). The leader counts the TTL from when it granted the lease or
// was last asked to keep it alive; a new leader gives every lease its TTL
// and an election timeout more.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	secs := uint64((ttl + time.Second - 1) / time.Second)
	r, err := c.kv(ctx, "lease grant", statemachine.KVRequest{Op: statemachine.KVLeaseGrant, TTL: secs})
	if err != nil {
		return 0, err
	}
	return LeaseID(r.Lease), nil
}

// Revoke revokes a lease and deletes its keys, in one revision. It returns
// ErrLeaseNotFound if the lease is not granted.
func (c *Client) Revoke(ctx context.Context, id LeaseID) error {
	r, err := c.kv(ctx, "lease revoke", statemachine.KVRequest{Op: statemachine.KVLeaseRevoke, Lease: uint64(id)})
	if err == nil && r.Status == statemachine.KVNotFound {
		err = fmt.Errorf("lease revoke %d: %w", id, ErrLeaseNotFound)
	}
	return err
}

// Leases lists the leases granted, read linearizably.
func (c *Client) Leases(ctx context.Context) ([]Lease, error) {
	r, err := c.kv(ctx, "lease list", statemachine.KVRequest{Op: statemachine.KVLeaseList})
	if err != nil {
		return nil, err
	}
	out := make([]Lease, len(r.Leases))
	for i, l := range r.Leases {
		out[i] = Lease{ID: LeaseID(l.ID), TTL: time.Duration(l.TTL) * time.Second, Keys: l.Keys}
	}
	return out, nil
}

// PutWithLease sets key to value and attaches it to the lease: when the
// lease expires or is revoked, the key is deleted. A later Put without a
// lease detaches it.
func (c *Client) PutWithLease(ctx context.Context, key string, value []byte, id LeaseID) error {
	_, err := c.kv(ctx, "put", statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte(key), Value: value, Lease: uint64(id)})
	return err
}

// OpPutWithLease is OpPut for a key attached to a lease.
func OpPutWithLease(key string, value []byte, id LeaseID) Op {
	return Op{statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte(key), Value: value, Lease: uint64(id)}}
}

// KeepAliveOnce renews the lease at the leader: its keys live for another
// TTL, which it returns. It returns ErrLeaseNotFound if the lease is not
// granted.
func (c *Client) KeepAliveOnce(ctx context.Context, id LeaseID) (time.Duration, error) {
	resp, err := c.call(ctx, clientapi.Request{Kind: clientapi.ReqKeepAlive, Data: binary.AppendUvarint(nil, uint64(id))})
	if err != nil {
		return 0, fmt.Errorf("lease keep-alive %d: %w", id, err)
	}
	return decodeKeepAlive(id, resp.Data)
}

func decodeKeepAlive(id LeaseID, data []byte) (time.Duration, error) {
	if len(data) == 0 {
		return 0, fmt.Errorf("lease keep-alive %d: %w (it expired or was revoked; its keys are gone)", id, ErrLeaseNotFound)
	}
	ms, n := binary.Uvarint(data)
	if n != len(data) {
		return 0, fmt.Errorf("lease keep-alive %d: the leader answered %x, not a TTL", id, data)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// KeepAliveEvent reports one keep-alive of KeepAlive: the TTL the lease has
// from now, or with Err, why KeepAlive stopped.
type KeepAliveEvent struct {
	TTL time.Duration
	Err error
}

// KeepAlive keeps the lease alive in the background, renewing it at a
// third of its TTL, until ctx ends or the lease is found gone, or may be:
// when no renewal got through within a TTL of the last one sent that did,
// the lease may have expired, and KeepAlive stops too. Then the last
// event's Err wraps ErrLeaseNotFound. Failed renewals are retried sooner.
// Each renewal is sent on the channel, which is dropped rather than waited
// for when the receiver is not reading; it closes when KeepAlive stops.
func (c *Client) KeepAlive(ctx context.Context, id LeaseID) <-chan KeepAliveEvent {
	return c.keepAlive(ctx, id, time.Time{})
}

// keepAlive is KeepAlive with the lease's end as far as the caller knows
// (zero: unknown).
func (c *Client) keepAlive(ctx context.Context, id LeaseID, deadline time.Time) <-chan KeepAliveEvent {
	ch := make(chan KeepAliveEvent, 1)
	go func() {
		defer close(ch)
		wait := time.Duration(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			actx, cancel := ctx, context.CancelFunc(func() {})
			if !deadline.IsZero() {
				actx, cancel = context.WithDeadline(ctx, deadline)
			}
			sent := time.Now()
			ttl, err := c.KeepAliveOnce(actx, id)
			cancel()
			if err != nil && !errors.Is(err, ErrLeaseNotFound) && !deadline.IsZero() && !time.Now().Before(deadline) && ctx.Err() == nil {
				err = fmt.Errorf("lease keep-alive %d: %w: no renewal got through within its TTL, so it may have expired (last error: %w)", id, ErrLeaseNotFound, err)
			}
			switch {
			case errors.Is(err, ErrLeaseNotFound):
				select {
				case ch <- KeepAliveEvent{Err: err}:
				case <-ctx.Done():
				}
				return
			case err != nil:
				wait = 200 * time.Millisecond
				continue
			}
			deadline = sent.Add(ttl)
			select {
			case ch <- KeepAliveEvent{TTL: ttl}:
			default:
			}
			wait = max(ttl/3, 100*time.Millisecond)
		}
	}()
	return ch
}
