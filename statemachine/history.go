package statemachine

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"time"
)

// The KV machine keeps a history of its recent changes: one event per key
// a write changed, in revision order, with what the key held before. Watches
// read it (Watch), and so do ranges at a past revision (KVRequest.Rev). The
// history is part of the replicated state, in snapshots too, so that every
// member keeps the same window and a watch can resume at any of them.
//
// The window is bounded by rules every member applies at the same place:
// the oldest revisions are dropped once the history holds more than
// MaxHistoryBytes, once they are older than HistoryAge by the log's time
// (Advance), and up to the revision a KVCompact names. Compacted is the
// newest revision dropped: the state at it can still be read, and a watch
// can start after it.

// History limits. They are rules of the replicated machine, alike on every
// member, so they are constants.
const (
	// MaxHistoryBytes bounds the history: keys, values and a fixed
	// overhead per event (historyEventBytes).
	MaxHistoryBytes = 32 << 20
	// HistoryAge bounds how long, by the log's time, a change is kept.
	HistoryAge = time.Hour
	// historyEventBytes is the overhead counted per event.
	historyEventBytes = 96
	// MaxWatchEvents bounds the events of one watch answer; its keys and
	// values are bounded by MaxRangeBytes.
	MaxWatchEvents = 1000
)

// histEvent is one change of one key: at revision rev (log time at, in
// Unix milliseconds) key became cur (put) or was deleted, and before it
// held prev (if had).
type histEvent struct {
	key  string
	rev  uint64
	at   uint64
	put  bool
	cur  kvEntry
	had  bool
	prev kvEntry
}

func (e *histEvent) size() int {
	return len(e.key) + len(e.cur.value) + len(e.prev.value) + historyEventBytes
}

// history is the KV machine's window of changes. NB: events are never
// changed in place and the slice only grows at its end or loses its head,
// so a frozen copy of the slice header stays valid while Apply goes on.
type history struct {
	events    []histEvent
	bytes     int
	compacted uint64
	// now is the log's time (Advance).
	now uint64
}

// record adds the change of key to the history: its entry became cur (or
// was deleted, with put false); it was prev before (if had).
func (kv *KV) record(key string, rev uint64, put bool, cur kvEntry, had bool, prev kvEntry) {
	e := histEvent{key: key, rev: rev, at: kv.hist.now, put: put, cur: cur, had: had, prev: prev}
	kv.hist.events = append(kv.hist.events, e)
	kv.hist.bytes += e.size()
}

// trim drops the oldest revisions while the history is over its byte bound
// or older than HistoryAge.
func (kv *KV) trim() {
	h := &kv.hist
	cutoff := uint64(0)
	if age := uint64(HistoryAge / time.Millisecond); h.now > age {
		cutoff = h.now - age
	}
	i := 0
	for i < len(h.events) && (h.bytes > MaxHistoryBytes || h.events[i].at < cutoff) {
		// Whole revisions go, so that a watch never sees part of one.
		rev := h.events[i].rev
		for i < len(h.events) && h.events[i].rev == rev {
			h.bytes -= h.events[i].size()
			i++
		}
		h.compacted = rev
	}
	h.drop(i)
}

// drop removes the first i events, copying the rest to a new array once
// the dropped head is the larger part, so that its memory is freed.
func (h *history) drop(i int) {
	if i == 0 {
		return
	}
	h.events = h.events[i:]
	if cap(h.events) > 2*len(h.events)+64 {
		h.events = slices.Clone(h.events)
	}
}

// compact drops every change up to revision rev.
func (kv *KV) compact(rev uint64) KVResponse {
	h := &kv.hist
	switch {
	case rev > kv.rev:
		return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("cannot compact revision %d: the store is at revision %d", rev, kv.rev)}
	case rev <= h.compacted:
		return KVResponse{Status: KVCompacted, Rev: h.compacted, Err: compactedMessage(rev, h.compacted, "compact")}
	}
	i := sort.Search(len(h.events), func(i int) bool { return h.events[i].rev > rev })
	for _, e := range h.events[:i] {
		h.bytes -= e.size()
	}
	h.drop(i)
	h.compacted = rev
	return KVResponse{Status: KVOK, Rev: rev}
}

// compactedMessage says why a read at revision rev, a watch from it (watch)
// or a compaction up to it (compact) cannot be done.
func compactedMessage(rev, compacted uint64, what string) string {
	switch what {
	case "watch":
		return fmt.Sprintf("revision %d is compacted: changes are kept from revision %d on; read the current state, then watch from the revision after it", rev, compacted+1)
	case "compact":
		return fmt.Sprintf("revision %d is compacted already: the history is compacted up to revision %d", rev, compacted)
	}
	return fmt.Sprintf("revision %d is compacted: the oldest revision still readable is %d", rev, compacted)
}

// Advance moves the log's time to ms (Unix milliseconds), if that is
// later, and drops the changes older than HistoryAge. The learner calls it
// with each batch's time stamp before the batch applies (Clocked).
func (kv *KV) Advance(ms uint64) {
	kv.hist.now = max(kv.hist.now, ms)
	kv.trim()
}

// Compacted returns the newest revision dropped from the history.
func (kv *KV) Compacted() uint64 { return kv.hist.compacted }

// itemsAt returns, in key order, the keys and entries range r names in the
// state as of revision rev (at most the current one, above Compacted).
func (kv *KV) itemsAt(r KVRequest, rev uint64) []kvItem {
	// NB: not for rev == kv.rev: within a transaction the maps already
	// hold its writes of the next revision.
	if rev == 0 {
		return kv.items(r)
	}
	h := &kv.hist
	// The first change after rev to each key tells what it held at rev.
	i := sort.Search(len(h.events), func(i int) bool { return h.events[i].rev > rev })
	first := map[string]*histEvent{}
	for j := i; j < len(h.events); j++ {
		e := &h.events[j]
		if _, seen := first[e.key]; !seen && covers(r, e.key) {
			first[e.key] = e
		}
	}
	var out []kvItem
	for _, it := range kv.items(r) {
		if _, changed := first[it.k]; !changed {
			out = append(out, it)
		}
	}
	for k, e := range first {
		if e.had {
			out = append(out, kvItem{k, e.prev})
		}
	}
	slices.SortFunc(out, func(a, b kvItem) int {
		switch {
		case a.k < b.k:
			return -1
		case a.k > b.k:
			return 1
		}
		return 0
	})
	return out
}

// checkRev refuses a read at revision rev that the history cannot answer.
func (kv *KV) checkRev(rev uint64) (KVResponse, bool) {
	switch {
	case rev == 0:
	case rev > kv.rev:
		return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("revision %d is in the future: the store is at revision %d", rev, kv.rev)}, false
	case rev < kv.hist.compacted:
		return KVResponse{Status: KVCompacted, Rev: kv.hist.compacted, Err: compactedMessage(rev, kv.hist.compacted, "read")}, false
	}
	return KVResponse{}, true
}

// KVEvent is one change of one key, as a watch reports it.
type KVEvent struct {
	// Delete says the key was deleted; otherwise it was put.
	Delete     bool
	Key, Value []byte
	// Rev is the change's revision. CreateRev and Version are the key's
	// after a put, as in KVResponse; zero for a delete.
	Rev, CreateRev, Version uint64
}

// KVWatch asks for the changes to the keys a range names (Key as a prefix,
// or with Ranged the keys from Key up to End), from a place in the history
// on: the changes of revision Rev on, passing over the first Skip changes of
// revision Rev, which an earlier answer reported. Rev 0 asks where a watch
// from now on starts: the answer's Next, at once.
type KVWatch struct {
	Key, End  []byte
	Ranged    bool
	Rev, Skip uint64
}

// KVWatchResponse answers a KVWatch: the changes found, in revision order,
// and where the next request continues (NextRev, NextSkip). Status is KVOK,
// KVCompacted (the changes asked for were dropped: Compacted is the newest
// revision gone) or KVBadRequest (Err says why).
type KVWatchResponse struct {
	Status            KVStatus
	Events            []KVEvent
	NextRev, NextSkip uint64
	// Revision is the store's revision, Compacted the newest revision
	// dropped from the history.
	Revision, Compacted uint64
	Err                 string
}

// Encode returns the bytes of w.
func (w KVWatch) Encode() []byte {
	b := appendBytes(nil, w.Key)
	b = appendBytes(b, w.End)
	flags := byte(0)
	if w.Ranged {
		flags = 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, w.Rev)
	return binary.AppendUvarint(b, w.Skip)
}

// DecodeKVWatch decodes bytes made by KVWatch.Encode.
func DecodeKVWatch(b []byte) (KVWatch, error) {
	d := decoder{b: b}
	w := KVWatch{Key: d.bytes(MaxKeySize, "key"), End: d.bytes(MaxKeySize, "range end")}
	switch f := d.byte(); f {
	case 0:
	case 1:
		w.Ranged = true
	default:
		d.fail(fmt.Sprintf("watch flags %#x", f))
	}
	w.Rev, w.Skip = d.uvarint("revision"), d.uvarint("skip")
	switch {
	case d.err != nil:
	case len(d.b) != 0:
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	case !w.Ranged && len(w.End) > 0:
		d.fail("a range end without the ranged flag")
	case w.Rev == 0 && w.Skip != 0:
		d.fail("a skip without a revision")
	}
	if d.err != nil {
		return KVWatch{}, fmt.Errorf("%w: watch: %s", ErrBadKVRequest, d.err)
	}
	return w, nil
}

// Encode returns the bytes of r.
func (r KVWatchResponse) Encode() []byte {
	b := []byte{byte(r.Status)}
	b = binary.AppendUvarint(b, r.NextRev)
	b = binary.AppendUvarint(b, r.NextSkip)
	b = binary.AppendUvarint(b, r.Revision)
	b = binary.AppendUvarint(b, r.Compacted)
	b = appendBytes(b, []byte(r.Err))
	b = binary.AppendUvarint(b, uint64(len(r.Events)))
	for _, e := range r.Events {
		flags := byte(0)
		if e.Delete {
			flags = 1
		}
		b = append(b, flags)
		b = appendBytes(b, e.Key)
		b = appendBytes(b, e.Value)
		b = binary.AppendUvarint(b, e.Rev)
		b = binary.AppendUvarint(b, e.CreateRev)
		b = binary.AppendUvarint(b, e.Version)
	}
	return b
}

// DecodeKVWatchResponse decodes bytes made by KVWatchResponse.Encode. The
// slices of the result alias b.
func DecodeKVWatchResponse(b []byte) (KVWatchResponse, error) {
	d := decoder{b: b}
	r := KVWatchResponse{Status: KVStatus(d.byte())}
	if r.Status != KVOK && r.Status != KVCompacted && r.Status != KVBadRequest {
		d.fail(fmt.Sprintf("unknown status %d", r.Status))
	}
	r.NextRev, r.NextSkip, r.Revision, r.Compacted = d.uvarint("next revision"), d.uvarint("next skip"), d.uvarint("revision"), d.uvarint("compacted revision")
	r.Err = string(d.bytes(1<<16, "error"))
	n := d.uvarint("event count")
	// An event takes at least six bytes.
	if n > MaxWatchEvents || n > uint64(len(d.b)/6) {
		d.fail(fmt.Sprintf("%d events in %d bytes", n, len(d.b)))
		n = 0
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var e KVEvent
		switch f := d.byte(); f {
		case 0:
		case 1:
			e.Delete = true
		default:
			d.fail(fmt.Sprintf("event flags %#x", f))
		}
		e.Key, e.Value = d.bytes(MaxKeySize, "key"), d.bytes(MaxValueSize, "value")
		e.Rev, e.CreateRev, e.Version = d.uvarint("revision"), d.uvarint("create revision"), d.uvarint("version")
		r.Events = append(r.Events, e)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return KVWatchResponse{}, fmt.Errorf("statemachine: malformed watch response: %s", d.err)
	}
	return r, nil
}

// Watch answers an encoded KVWatch from the history, as of the last
// applied command (Watcher). When no change it names happened yet, ready
// is false and next is the query moved past what was looked at, to ask
// again after later commands.
func (kv *KV) Watch(q []byte) (answer, next []byte, ready bool) {
	w, err := DecodeKVWatch(q)
	if err != nil {
		return KVWatchResponse{Status: KVBadRequest, Err: err.Error(), Revision: kv.rev, Compacted: kv.hist.compacted}.Encode(), nil, true
	}
	resp := kv.watch(w)
	if resp.Status != KVOK || len(resp.Events) > 0 || w.Rev == 0 {
		return resp.Encode(), nil, true
	}
	w.Rev, w.Skip = resp.NextRev, resp.NextSkip
	return resp.Encode(), w.Encode(), false
}

func (kv *KV) watch(w KVWatch) KVWatchResponse {
	h := &kv.hist
	resp := KVWatchResponse{Status: KVOK, Revision: kv.rev, Compacted: h.compacted, NextRev: kv.rev + 1}
	if w.Rev == 0 {
		return resp
	}
	if w.Rev <= h.compacted {
		resp.Status, resp.Err = KVCompacted, compactedMessage(w.Rev, h.compacted, "watch")
		return resp
	}
	if w.Rev > kv.rev {
		// NB: a watch may start in the future; nothing to say yet.
		resp.NextRev, resp.NextSkip = w.Rev, w.Skip
		return resp
	}
	r := KVRequest{Key: w.Key, End: w.End, Ranged: w.Ranged}
	i := sort.Search(len(h.events), func(i int) bool { return h.events[i].rev >= w.Rev })
	rev, skip := w.Rev, uint64(0)
	budget := MaxRangeBytes
	for ; i < len(h.events); i++ {
		e := &h.events[i]
		if e.rev != rev {
			rev, skip = e.rev, 0
		}
		if e.rev == w.Rev && skip < w.Skip {
			skip++
			continue
		}
		if covers(r, e.key) {
			ev := KVEvent{Delete: !e.put, Key: []byte(e.key), Rev: e.rev}
			if e.put {
				ev.Value, ev.CreateRev, ev.Version = e.cur.value, e.cur.create, e.cur.version
			}
			n := len(ev.Key) + len(ev.Value)
			if len(resp.Events) == MaxWatchEvents || (len(resp.Events) > 0 && n > budget) {
				resp.NextRev, resp.NextSkip = rev, skip
				return resp
			}
			budget -= n
			resp.Events = append(resp.Events, ev)
		}
		skip++
	}
	return resp
}

// writeHistory writes the history after the keys of a snapshot.
func writeHistory(bw *bufio.Writer, h history) error {
	err := putUvarint(bw, h.compacted)
	if err == nil {
		err = putUvarint(bw, h.now)
	}
	if err == nil {
		err = putUvarint(bw, uint64(len(h.events)))
	}
	for i := 0; i < len(h.events) && err == nil; i++ {
		e := &h.events[i]
		flags := uint64(0)
		if e.put {
			flags |= 1
		}
		if e.had {
			flags |= 2
		}
		err = putBytes(bw, []byte(e.key))
		nums := []uint64{e.rev, e.at, flags}
		if e.put {
			nums = append(nums, e.cur.create, e.cur.version)
		}
		if e.had {
			nums = append(nums, e.prev.rev, e.prev.create, e.prev.version)
		}
		for _, x := range nums {
			if err == nil {
				err = putUvarint(bw, x)
			}
		}
		if err == nil && e.put {
			err = putBytes(bw, e.cur.value)
		}
		if err == nil && e.had {
			err = putBytes(bw, e.prev.value)
		}
	}
	return err
}

// readHistory reads what writeHistory wrote, for a state at revision rev.
func readHistory(br *bufio.Reader, rev uint64) (history, error) {
	var h history
	var err error
	if h.compacted, err = readUvarint(br, "compacted revision"); err != nil {
		return h, err
	}
	if h.now, err = readUvarint(br, "log time"); err != nil {
		return h, err
	}
	n, err := readUvarint(br, "event count")
	if err != nil {
		return h, err
	}
	if h.compacted > rev {
		return h, fmt.Errorf("%w: compacted at revision %d, past the state's %d", ErrBadSnapshot, h.compacted, rev)
	}
	last := h.compacted
	for i := uint64(0); i < n; i++ {
		var e histEvent
		k, err := readBytes(br, MaxKeySize, "event key")
		if err != nil {
			return h, err
		}
		e.key = string(k)
		var flags uint64
		for _, p := range []*uint64{&e.rev, &e.at, &flags} {
			if *p, err = readUvarint(br, "event"); err != nil {
				return h, err
			}
		}
		if flags > 3 || e.rev <= h.compacted || e.rev < last || e.rev > rev {
			return h, fmt.Errorf("%w: event %d of key %q at revision %d (flags %d) after %d, history after %d up to %d", ErrBadSnapshot, i, k, e.rev, flags, last, h.compacted, rev)
		}
		last = e.rev
		e.put, e.had = flags&1 != 0, flags&2 != 0
		var nums []*uint64
		if e.put {
			e.cur.rev = e.rev
			nums = append(nums, &e.cur.create, &e.cur.version)
		}
		if e.had {
			nums = append(nums, &e.prev.rev, &e.prev.create, &e.prev.version)
		}
		for _, p := range nums {
			if *p, err = readUvarint(br, "event"); err != nil {
				return h, err
			}
		}
		if e.put {
			if e.cur.value, err = readBytes(br, MaxValueSize, "event value"); err != nil {
				return h, err
			}
		}
		if e.had {
			if e.prev.value, err = readBytes(br, MaxValueSize, "event's previous value"); err != nil {
				return h, err
			}
		}
		h.events = append(h.events, e)
		h.bytes += e.size()
	}
	return h, nil
}
