package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
	"github.com/paxosd/paxosd/wal"
)

// logTap keeps the members' Info logs, to check what they did, and passes
// warnings on to the test log.
type logTap struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (lt *logTap) logger(t *testing.T) *slog.Logger {
	warn := testLogger(t).Handler()
	info := slog.NewTextHandler(lockedWriter{lt}, &slog.HandlerOptions{Level: slog.LevelInfo})
	return slog.New(teeHandler{info, warn})
}

func (lt *logTap) has(substrs ...string) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for line := range strings.SplitSeq(lt.buf.String(), "\n") {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all {
			return true
		}
	}
	return false
}

type lockedWriter struct{ lt *logTap }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.lt.mu.Lock()
	defer w.lt.mu.Unlock()
	return w.lt.buf.Write(p)
}

type teeHandler [2]slog.Handler

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h[0].Enabled(ctx, l) || h[1].Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, x := range h {
		if x.Enabled(ctx, r.Level) {
			if err := x.Handle(ctx, r.Clone()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h[0].WithAttrs(as), h[1].WithAttrs(as)}
}

func (h teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{h[0].WithGroup(g), h[1].WithGroup(g)}
}

// putMany writes n keys from 8 writers.
func putMany(t *testing.T, l *Local, prefix string, n int) {
	t.Helper()
	c := newClient(t, l)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := c.Put(context.Background(), fmt.Sprintf("%s%d", prefix, i), []byte(fmt.Sprintf("v%d", i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A member stopped while the others snapshot and truncate comes back by
// receiving a snapshot, and converges on the same state; the cluster then
// restarts from its snapshots.
func TestSnapshotCatchUpAndRestart(t *testing.T) {
	dir := t.TempDir()
	var tap logTap
	cfg := LocalConfig{Dir: dir, Template: Config{TickInterval: 10 * time.Millisecond, RequestTimeout: 5 * time.Second,
		SnapshotEvery: 20, LogRetain: -1, Logger: tap.logger(t)}}
	l, err := StartLocal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Stop() }()
	c := newClient(t, l)
	putMany(t, l, "a", 40)
	lead := leaderOf(t, c, l)
	down := lead%3 + 1
	if err := l.StopMember(down); err != nil {
		t.Fatal(err)
	}
	putMany(t, l, "b", 1200)
	// The running members snapshot and the acceptors truncate past the
	// stopped member.
	var live clientapi.Status
	for _, s := range l.Servers() {
		if live, err = c.Status(context.Background(), s.ClientAddr()); err != nil {
			t.Fatal(err)
		}
		if live.SnapshotSlot == 0 || live.LogBytes == 0 {
			t.Fatalf("member %d after 1240 writes: snapshot slot %d, log %d bytes", live.ID, live.SnapshotSlot, live.LogBytes)
		}
	}
	if err := l.StartMember(down); err != nil {
		t.Fatal(err)
	}
	applied := waitConverged(t, c, l)
	if !tap.has("installed snapshot", fmt.Sprintf("node=%d", down)) {
		t.Fatalf("member %d converged at slot %d without installing a snapshot", down, applied)
	}
	for _, k := range []string{"a3", "b1199"} {
		if v, err := c.GetSerializable(context.Background(), k); err != nil || !strings.HasPrefix(string(v), "v") {
			t.Fatalf("get %s: %q, %v", k, v, err)
		}
	}

	// snapshot save: a fresh snapshot, whole and checked.
	var buf bytes.Buffer
	slot, size, err := c.SaveSnapshot(context.Background(), l.Servers()[0].ClientAddr(), &buf)
	if err != nil || slot < applied || size != uint64(buf.Len()) {
		t.Fatalf("SaveSnapshot: slot %d (applied %d), %d bytes (got %d), %v", slot, applied, size, buf.Len(), err)
	}
	path := filepath.Join(t.TempDir(), "saved.pxsnap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	kv := statemachine.NewKV()
	if _, err := wal.ReadSnapshot(nil, path, func(_ wal.SnapshotHeader, r io.Reader) error {
		return statemachine.NewSessions(kv).Restore(r)
	}); err != nil || kv.Len() != 1240 {
		t.Fatalf("saved snapshot: %d keys, %v; want 1240", kv.Len(), err)
	}

	// A restart begins from the snapshots.
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	tap.mu.Lock()
	tap.buf.Reset()
	tap.mu.Unlock()
	if l, err = StartLocal(cfg); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, l)
	if got := waitConverged(t, c, l); got < applied {
		t.Fatalf("restarted at slot %d, below %d", got, applied)
	}
	if !tap.has("recovered", "snapshot=") || tap.has("recovered", "snapshot=0 ") {
		t.Fatal("a member restarted without its snapshot")
	}
	if v, err := c.Get(context.Background(), "b7"); err != nil || string(v) != "v7" {
		t.Fatalf("get b7 after the restart: %q, %v", v, err)
	}

	// A damaged snapshot stops the start, naming the file.
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	snaps, err := filepath.Glob(filepath.Join(dir, "1", snapDir, "*.pxsnap"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no snapshots in member 1's directory (%v)", err)
	}
	newest := snaps[len(snaps)-1]
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(newest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	l2, err := StartLocal(cfg)
	if err == nil {
		l2.Stop()
	}
	if err == nil || !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(newest)) {
		t.Fatalf("start with a damaged snapshot: %v; want ErrCorrupt naming %s", err, filepath.Base(newest))
	}
	t.Logf("start with a damaged snapshot: %v", err)
}
