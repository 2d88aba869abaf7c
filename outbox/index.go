package outbox

import (
	"container/heap"
	"errors"
	"io/fs"
	"os"
	"sync"
	"time"
)

// index is the in-memory view of queue/ used to schedule deliveries: per
// account, a heap of queued messages by next attempt. It is rebuilt from the
// spool by rescan, so it never holds anything the disk does not.
type index struct {
	mu      sync.Mutex
	entries map[string]*entry
	heaps   map[string]*entryHeap
	changed chan struct{} // closed and replaced on every change
}

type entry struct {
	item     Item
	fi       os.FileInfo // identity of the file the item was read from; nil if unknown
	inflight bool        // claimed by a worker; not in any heap
	hi       int         // heap index
}

type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	a, b := h[i].item, h[j].item
	if !a.NextAttempt.Equal(b.NextAttempt) {
		return a.NextAttempt.Before(b.NextAttempt)
	}
	return a.ID < b.ID
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi, h[j].hi = i, j
}
func (h *entryHeap) Push(x any) { e := x.(*entry); e.hi = len(*h); *h = append(*h, e) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hi = -1
	return e
}

func (x *index) init() {
	x.entries = map[string]*entry{}
	x.heaps = map[string]*entryHeap{}
	x.changed = make(chan struct{})
}

func (x *index) heapFor(acct string) *entryHeap {
	h := x.heaps[acct]
	if h == nil {
		h = &entryHeap{}
		x.heaps[acct] = h
	}
	return h
}

// broadcast wakes every waiter; x.mu must be held.
func (x *index) broadcast() {
	close(x.changed)
	x.changed = make(chan struct{})
}

// upsert records it as queued. An entry being delivered is left alone:
// its worker settles it.
func (x *index) upsert(it Item, fi os.FileInfo) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.upsertLocked(it, fi)
	x.broadcast()
}

func (x *index) upsertLocked(it Item, fi os.FileInfo) {
	e := x.entries[it.ID]
	if e != nil && e.inflight {
		return
	}
	if e != nil && e.item.Account != it.Account {
		heap.Remove(x.heapFor(e.item.Account), e.hi)
		e = nil
	}
	if e == nil {
		e = &entry{item: it, fi: fi}
		x.entries[it.ID] = e
		heap.Push(x.heapFor(it.Account), e)
		return
	}
	e.item, e.fi = it, fi
	heap.Fix(x.heapFor(it.Account), e.hi)
}

// remove forgets id unless a worker holds it.
func (x *index) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(id)
	x.broadcast()
}

func (x *index) removeLocked(id string) {
	e := x.entries[id]
	if e == nil || e.inflight {
		return
	}
	heap.Remove(x.heapFor(e.item.Account), e.hi)
	delete(x.entries, id)
}

// claim returns the account's earliest message if it is due at now, marked
// in flight; otherwise nil, the next due time (zero if none) and the
// channel that is closed on the next change.
func (x *index) claim(acct string, now time.Time) (*entry, time.Time, <-chan struct{}) {
	x.mu.Lock()
	defer x.mu.Unlock()
	h := x.heaps[acct]
	if h == nil || h.Len() == 0 {
		return nil, time.Time{}, x.changed
	}
	top := (*h)[0]
	if top.item.NextAttempt.After(now) {
		return nil, top.item.NextAttempt, x.changed
	}
	heap.Pop(h)
	top.inflight = true
	return top, time.Time{}, x.changed
}

// settle ends a worker's hold on e: with it non-nil the message stays
// queued with that metadata, otherwise it leaves the queue.
func (x *index) settle(e *entry, it *Item, fi os.FileInfo) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e.inflight = false
	if it == nil {
		if x.entries[e.item.ID] == e {
			delete(x.entries, e.item.ID)
		}
		x.broadcast()
		return
	}
	e.item, e.fi = *it, fi
	heap.Push(x.heapFor(it.Account), e)
	x.broadcast()
}

// count returns the number of queued messages known.
func (x *index) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.entries)
}

// rescan brings the index in line with queue/: new or rewritten files
// (another process's enqueue, a CLI retry) are read, vanished ones dropped.
// A file is re-read only when its identity changed; every rewrite is a
// rename of a new file, so identity is enough.
func (o *Outbox) rescan() error {
	ids, err := o.listIDs(StateQueued)
	if err != nil {
		return err
	}
	type found struct {
		it Item
		fi os.FileInfo
	}
	present := make(map[string]struct{}, len(ids))
	var changed []found
	x := &o.idx
	for _, id := range ids {
		present[id] = struct{}{}
		p := o.path(StateQueued, id)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		x.mu.Lock()
		e := x.entries[id]
		same := e != nil && (e.inflight || e.fi != nil && os.SameFile(e.fi, fi))
		x.mu.Unlock()
		if same {
			continue
		}
		it, err := readMeta(p)
		if err != nil {
			switch {
			case errors.Is(err, ErrCorrupt):
				o.quarantineFile(StateQueued, id)
			case !errors.Is(err, fs.ErrNotExist):
				o.log.Warn("outbox: unreadable queue file", "path", p, "error", err)
			}
			continue
		}
		if it.ID != id || it.State != StateQueued {
			// Metadata of another message or state (a file copied in by
			// hand): kept in corrupt/ rather than skipped at every scan.
			o.quarantineFile(StateQueued, id)
			continue
		}
		changed = append(changed, found{it, fi})
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, f := range changed {
		x.upsertLocked(f.it, f.fi)
	}
	for id, e := range x.entries {
		if _, ok := present[id]; !ok && !e.inflight {
			// Enqueued after the listing, or really gone?
			if _, err := os.Stat(o.path(StateQueued, id)); errors.Is(err, fs.ErrNotExist) {
				x.removeLocked(id)
			}
		}
	}
	x.broadcast()
	return nil
}
