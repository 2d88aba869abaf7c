package engine

import (
	"container/heap"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Op is a set of file operations observed by a Watcher.
type Op uint32

const (
	// OpCreate: the path appeared (created, or renamed into place).
	OpCreate Op = 1 << iota
	// OpWrite: the file's content was written.
	OpWrite
	// OpRemove: the path is gone (removed, or renamed away).
	OpRemove
	// OpChmod: attributes (mode, mtime) changed. Only reported by watchers
	// without debouncing; a debounced watcher drops attribute-only changes.
	OpChmod
)

// Has reports whether o includes every operation in h.
func (o Op) Has(h Op) bool { return o&h == h && h != 0 }

// String returns the operations as "create|write" style text.
func (o Op) String() string {
	var parts []string
	for _, x := range []struct {
		op   Op
		name string
	}{{OpCreate, "create"}, {OpWrite, "write"}, {OpRemove, "remove"}, {OpChmod, "chmod"}} {
		if o&x.op != 0 {
			parts = append(parts, x.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// WatchEvent is a coalesced change to one file.
//
// In a debounced watcher, Op is OpRemove when the file is gone at the end of
// the quiet period, and otherwise a combination of OpCreate and OpWrite;
// either way of "changed" means the file should be (re)read. An atomic save
// (write a temp file, rename it over the target) yields a single event for
// the target.
type WatchEvent struct {
	Path string
	Op   Op
}

// DefaultDebounce is the quiet period used when WatchOptions.Debounce is 0.
const DefaultDebounce = 100 * time.Millisecond

// Overflow bursts. A large copy into a watched folder overflows the
// kernel's (or the hub's) event queue many times within milliseconds. The
// Watcher reports one *OverflowError per burst, once no overflow has come
// for OverflowQuiet (or OverflowMaxBurst after the first, for a burst that
// does not stop), so its reader logs once and rescans once, after the
// events it could not see.
var (
	OverflowQuiet    = 100 * time.Millisecond
	OverflowMaxBurst = 2 * time.Second
)

// overflowKey is the deadline queue's key for the overflow burst; paths are
// cleaned file names and never contain NUL.
const overflowKey = "\x00overflow"

// OverflowError reports a burst of lost events: the event queue overflowed
// Count times within Span. errors.Is(err, fsnotify.ErrEventOverflow) holds;
// the reader should rescan the folder once.
type OverflowError struct {
	Root  string
	Count int
	Span  time.Duration
}

// Error implements error.
func (e *OverflowError) Error() string {
	return fmt.Sprintf("engine: watch %s: %v (%d times in %v): events were lost, rescanning", e.Root, fsnotify.ErrEventOverflow, e.Count, e.Span)
}

// Unwrap returns fsnotify.ErrEventOverflow.
func (e *OverflowError) Unwrap() error { return fsnotify.ErrEventOverflow }

// maxPendingErrors bounds the errors kept for a reader that does not drain
// Errors; later errors are counted and reported in one summary error.
const maxPendingErrors = 100

// WatchOptions configures a Watcher. The zero value watches one directory
// non-recursively with DefaultDebounce, keeps every file and uses the real
// clock.
type WatchOptions struct {
	// Recursive also watches subdirectories, including ones created later.
	Recursive bool
	// Debounce is the quiet period per path: events for a path are merged
	// until none has arrived for this long (the fsnotify dedup approach).
	// 0 means DefaultDebounce; a negative value disables debouncing and
	// emits every relevant event as it arrives.
	Debounce time.Duration
	// Filter keeps the files whose events are emitted; nil keeps all. It is
	// called with the full path of a file, never of a directory.
	Filter func(path string) bool
	// SkipDir, in recursive mode, excludes subdirectories (and everything
	// below them) from watching; nil excludes none.
	SkipDir func(path string) bool
	// Clock times the debounce; nil means RealClock().
	Clock Clock
	// Hub, when set, shares one fsnotify watcher with other Watchers
	// instead of opening one for this Watcher.
	Hub *WatchHub
	// Observed, when set, is called from the watcher goroutine after each
	// raw event that passed Filter has been recorded. Tests driving a
	// FakeClock use it to know an event has been seen before they Advance.
	Observed func(path string, op Op)

	// source replaces the fsnotify watcher; tests inject events and errors
	// through it.
	source eventSource
}

// Watcher watches a directory tree with fsnotify and emits debounced,
// filtered WatchEvents. Directories are watched rather than files, so that
// editors that replace a file by renaming a new one over it keep being
// followed. One goroutine owns all state and a single Clock timer serves
// every pending path: each path has its own deadline, and the timer sleeps
// until the earliest one.
type Watcher struct {
	root  string
	opts  WatchOptions
	clock Clock
	fs    eventSource

	events chan WatchEvent
	errors chan error
	sync   chan chan int
	// syncErrs is barrier's twin for errors, for tests.
	syncErrs chan chan int
	closing,
	done chan struct{}
	closeOnce sync.Once
	closeErr  error

	// Loop-owned state.
	pend      map[string]*pendingPath
	deadlines deadlineQueue
	outEvents []WatchEvent
	outErrors []error
	dropped   int
	timer     Timer
	// The overflow burst in progress: count so far and first one's time.
	overflows     int
	overflowStart time.Time
}

type pendingPath struct {
	first Op // first operation in the current window
	ops   Op // all operations in the current window
}

// NewWatcher starts watching root (a directory). The returned Watcher is
// running; call Close to stop it.
func NewWatcher(root string, opts WatchOptions) (*Watcher, error) {
	root = filepath.Clean(root)
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("engine: watch %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("engine: watch %s: not a directory", root)
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	clock := opts.Clock
	if clock == nil {
		clock = RealClock()
	}
	var fsw eventSource
	if opts.source != nil {
		fsw = opts.source
	} else if opts.Hub != nil {
		fsw, err = opts.Hub.source()
	} else {
		fsw, err = newOwnSource()
	}
	if err != nil {
		return nil, fmt.Errorf("engine: watch %s: %w", root, err)
	}
	w := &Watcher{
		root:     root,
		opts:     opts,
		clock:    clock,
		fs:       fsw,
		events:   make(chan WatchEvent),
		errors:   make(chan error),
		sync:     make(chan chan int),
		closing:  make(chan struct{}),
		syncErrs: make(chan chan int),
		done:     make(chan struct{}),
		pend:     make(map[string]*pendingPath),
	}
	w.deadlines.init()
	if err := fsw.Add(root); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("engine: watch %s: %w", root, err)
	}
	if opts.Recursive {
		// Subdirectories existing now are watched but their files are not
		// reported: scanning what is already there is the caller's job.
		if err := w.addTree(root, false); err != nil {
			fsw.Close()
			return nil, err
		}
	}
	w.timer = clock.NewTimer(time.Hour)
	w.timer.Stop()
	go w.run()
	return w, nil
}

// Root returns the watched directory.
func (w *Watcher) Root() string { return w.root }

// Events returns the channel of coalesced events. It is closed after Close.
// The reader should drain it promptly; events wait in memory meanwhile.
func (w *Watcher) Events() <-chan WatchEvent { return w.events }

// Errors returns the channel of watcher errors (for example
// fsnotify.ErrEventOverflow, after which the caller should rescan, or a
// subdirectory that could not be watched). It is closed after Close.
func (w *Watcher) Errors() <-chan error { return w.errors }

// Close stops the watcher goroutine and releases the fsnotify watcher.
// Events not yet delivered are discarded. It is safe to call more than once.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.closing)
		<-w.done
		if err := w.fs.Close(); err != nil {
			w.closeErr = fmt.Errorf("engine: close watch %s: %w", w.root, err)
		}
	})
	return w.closeErr
}

func (w *Watcher) run() {
	defer close(w.done)
	defer close(w.events)
	defer close(w.errors)
	defer w.timer.Stop()
	for {
		var (
			evOut  chan WatchEvent
			evHead WatchEvent
			erOut  chan error
			erHead error
		)
		if len(w.outEvents) > 0 {
			evOut, evHead = w.events, w.outEvents[0]
		}
		if len(w.outErrors) > 0 {
			erOut, erHead = w.errors, w.outErrors[0]
		}
		select {
		case ev, ok := <-w.fs.Events():
			if !ok {
				return
			}
			w.handle(ev)
		case err, ok := <-w.fs.Errors():
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.noteOverflow()
				continue
			}
			w.pushError(fmt.Errorf("engine: watch %s: %w", w.root, err))
		case <-w.timer.C():
			w.flushDue()
		case evOut <- evHead:
			w.outEvents[0] = WatchEvent{}
			w.outEvents = w.outEvents[1:]
		case erOut <- erHead:
			w.outErrors[0] = nil
			w.outErrors = w.outErrors[1:]
		case reply := <-w.sync:
			// The timer may have fired without its value being picked yet;
			// flushing here makes sync a true barrier for FakeClock tests.
			w.flushDue()
			reply <- len(w.outEvents)
		case reply := <-w.syncErrs:
			w.flushDue()
			reply <- len(w.outErrors)
		case <-w.closing:
			return
		}
	}
}

// barrier flushes every path due at the clock's current time and returns the
// number of events waiting for the reader. Tests use it to know that all
// consequences of an Advance have been queued.
func (w *Watcher) barrier() int {
	reply := make(chan int, 1)
	select {
	case w.sync <- reply:
		return <-reply
	case <-w.done:
		return 0
	}
}

// barrierErrs flushes what is due, as barrier does, and returns the number
// of errors waiting for the reader.
func (w *Watcher) barrierErrs() int {
	reply := make(chan int, 1)
	select {
	case w.syncErrs <- reply:
		return <-reply
	case <-w.done:
		return 0
	}
}

func (w *Watcher) handle(ev fsnotify.Event) {
	path := filepath.Clean(ev.Name)
	if path == w.root {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.pushError(fmt.Errorf("engine: watch %s: directory removed or renamed", w.root))
		}
		return
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			if w.opts.Recursive && !w.skipDir(path) {
				if err := w.addTree(path, true); err != nil {
					w.pushError(err)
				}
			}
			return
		}
	}
	if w.opts.Filter != nil && !w.opts.Filter(path) {
		return
	}
	var op Op
	if ev.Has(fsnotify.Create) {
		op |= OpCreate
	}
	if ev.Has(fsnotify.Write) {
		op |= OpWrite
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		op |= OpRemove
	}
	if ev.Has(fsnotify.Chmod) {
		op |= OpChmod
	}
	if op == 0 {
		return
	}
	w.record(path, op)
	if w.opts.Observed != nil {
		w.opts.Observed(path, op)
	}
}

// record notes op for path: immediately emitted without debouncing,
// otherwise merged into the path's window and its deadline pushed back.
func (w *Watcher) record(path string, op Op) {
	if w.opts.Debounce < 0 {
		w.outEvents = append(w.outEvents, WatchEvent{Path: path, Op: op})
		return
	}
	p := w.pend[path]
	if p == nil {
		p = &pendingPath{first: op}
		w.pend[path] = p
	}
	p.ops |= op
	w.deadlines.set(path, w.clock.Now().Add(w.opts.Debounce))
	w.rearm()
}

func (w *Watcher) rearm() { w.deadlines.arm(w.timer, w.clock) }

// noteOverflow counts an overflow into the current burst and pushes the
// burst's end back by OverflowQuiet, up to OverflowMaxBurst after its start.
func (w *Watcher) noteOverflow() {
	if r, ok := w.fs.(interface{ overflowReceived() }); ok {
		r.overflowReceived()
	}
	now := w.clock.Now()
	if w.overflows == 0 {
		w.overflowStart = now
	}
	w.overflows++
	end := now.Add(OverflowQuiet)
	if limit := w.overflowStart.Add(OverflowMaxBurst); end.After(limit) {
		end = limit
	}
	w.deadlines.set(overflowKey, end)
	w.rearm()
}

// flushDue turns every path whose quiet period is over into at most one
// event, deciding from the file's state now rather than from the event
// sequence, which differs between platforms and editors.
func (w *Watcher) flushDue() {
	now := w.clock.Now()
	for _, path := range w.deadlines.popDue(now) {
		if path == overflowKey {
			w.pushError(&OverflowError{Root: w.root, Count: w.overflows, Span: now.Sub(w.overflowStart)})
			w.overflows = 0
			continue
		}
		p := w.pend[path]
		delete(w.pend, path)
		if p == nil {
			continue
		}
		fi, err := os.Stat(path)
		exists := !errors.Is(err, fs.ErrNotExist)
		switch {
		case exists && err == nil && fi.IsDir():
			// A directory took the file's name; nothing to report.
		case !exists:
			// A file that appeared and vanished within one window (an
			// editor's temp file) was never there as far as readers care.
			// A vanish without a remove event seen yet will get its own
			// window when that event arrives.
			if !p.first.Has(OpCreate) && p.ops&OpRemove != 0 {
				w.outEvents = append(w.outEvents, WatchEvent{Path: path, Op: OpRemove})
			}
		default:
			op := p.ops & (OpCreate | OpWrite)
			if op == 0 && p.ops&OpRemove != 0 {
				op = OpWrite // renamed away and back: report as changed
			}
			if op != 0 {
				w.outEvents = append(w.outEvents, WatchEvent{Path: path, Op: op})
			}
		}
	}
	w.rearm()
}

func (w *Watcher) pushError(err error) {
	if len(w.outErrors) >= maxPendingErrors {
		w.dropped++
		return
	}
	if w.dropped > 0 {
		err = fmt.Errorf("%w (and %d earlier errors dropped: Errors not drained)", err, w.dropped)
		w.dropped = 0
	}
	w.outErrors = append(w.outErrors, err)
}

func (w *Watcher) skipDir(path string) bool {
	return w.opts.SkipDir != nil && w.opts.SkipDir(path)
}

// addTree watches dir and every non-skipped directory below it. With
// report set, files found are recorded as created: they may have been
// written before the watch existed and no event will ever mention them.
func (w *Watcher) addTree(dir string, report bool) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return fmt.Errorf("engine: watch %q: %w", path, err)
		}
		if d.IsDir() {
			if path != dir && w.skipDir(path) {
				return filepath.SkipDir
			}
			if path == w.root {
				return nil // added by NewWatcher
			}
			if err := w.fs.Add(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("engine: watch %q: %w", path, err)
			}
			return nil
		}
		if report && (w.opts.Filter == nil || w.opts.Filter(path)) {
			w.record(path, OpCreate)
			if w.opts.Observed != nil {
				w.opts.Observed(path, OpCreate)
			}
		}
		return nil
	})
}

// deadlineQueue is a min-heap of per-key deadlines with O(log n) update,
// so thousands of pending files cost one timer and no scans.
type deadlineQueue struct {
	items []*deadlineItem
	index map[string]*deadlineItem
}

type deadlineItem struct {
	key  string
	when time.Time
	pos  int
}

func (q *deadlineQueue) init() { q.index = make(map[string]*deadlineItem) }

// set schedules key at when, replacing any earlier deadline for key.
func (q *deadlineQueue) set(key string, when time.Time) {
	if it, ok := q.index[key]; ok {
		it.when = when
		heap.Fix((*deadlineHeap)(q), it.pos)
		return
	}
	it := &deadlineItem{key: key, when: when}
	q.index[key] = it
	heap.Push((*deadlineHeap)(q), it)
}

// remove drops key's deadline, if any.
func (q *deadlineQueue) remove(key string) {
	if it, ok := q.index[key]; ok {
		heap.Remove((*deadlineHeap)(q), it.pos)
	}
}

// has reports whether key has a deadline.
func (q *deadlineQueue) has(key string) bool {
	_, ok := q.index[key]
	return ok
}

// peek returns the earliest deadline.
// arm sets timer to fire at the earliest deadline, or stops it when there
// is none.
func (q *deadlineQueue) arm(timer Timer, clock Clock) {
	next, ok := q.peek()
	if !ok {
		timer.Stop()
		return
	}
	timer.Reset(next.Sub(clock.Now()))
}

func (q *deadlineQueue) peek() (time.Time, bool) {
	if len(q.items) == 0 {
		return time.Time{}, false
	}
	return q.items[0].when, true
}

// popDue removes and returns, earliest first, the keys due at or before now.
func (q *deadlineQueue) popDue(now time.Time) []string {
	var due []string
	for len(q.items) > 0 && !q.items[0].when.After(now) {
		it := heap.Pop((*deadlineHeap)(q)).(*deadlineItem)
		due = append(due, it.key)
	}
	return due
}

// deadlineHeap adapts deadlineQueue to container/heap.
type deadlineHeap deadlineQueue

func (h *deadlineHeap) Len() int           { return len(h.items) }
func (h *deadlineHeap) Less(i, j int) bool { return h.items[i].when.Before(h.items[j].when) }
func (h *deadlineHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].pos, h.items[j].pos = i, j
}
func (h *deadlineHeap) Push(x any) {
	it := x.(*deadlineItem)
	it.pos = len(h.items)
	h.items = append(h.items, it)
}
func (h *deadlineHeap) Pop() any {
	n := len(h.items)
	it := h.items[n-1]
	h.items[n-1] = nil
	h.items = h.items[:n-1]
	delete(h.index, it.key)
	return it
}
