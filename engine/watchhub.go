package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// WatchHub shares one fsnotify watcher (one inotify instance on Linux)
// between many Watchers. Without it every watched folder costs an instance,
// and the kernel's per-user limit (fs.inotify.max_user_instances, 128 by
// default, shared by all the user's processes) would cap a deployment at
// about a hundred on_file triggers. The engine gives all its file triggers
// and its scripts watcher one hub.
type WatchHub struct {
	fsw *fsnotify.Watcher

	mu   sync.Mutex
	dirs map[string]map[*hubSource]bool // watched dir → subscribers
	subs map[*hubSource]bool
	done chan struct{}
}

// hubQueue bounds what one slow subscriber can hold; beyond it the
// subscriber gets fsnotify.ErrEventOverflow and rescans, as with a kernel
// queue overflow.
var hubQueue = 256 // a variable so tests can force overflows

// NewWatchHub starts a hub. Close it when every Watcher using it is closed.
func NewWatchHub() (*WatchHub, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("engine: watch hub: %w", err)
	}
	h := &WatchHub{fsw: fsw, dirs: map[string]map[*hubSource]bool{}, subs: map[*hubSource]bool{}, done: make(chan struct{})}
	go h.run()
	return h, nil
}

// Close stops the hub and its fsnotify watcher.
func (h *WatchHub) Close() error {
	err := h.fsw.Close()
	<-h.done
	return err
}

func (h *WatchHub) run() {
	defer close(h.done)
	for {
		select {
		case ev, ok := <-h.fsw.Events:
			if !ok {
				return
			}
			h.dispatch(ev)
		case err, ok := <-h.fsw.Errors:
			if !ok {
				return
			}
			h.mu.Lock()
			for s := range h.subs {
				s.pushErr(err)
			}
			h.mu.Unlock()
		}
	}
}

// dispatch sends ev to the subscribers of the directory it happened in,
// and for a watched directory itself (removed, renamed) to its own.
func (h *WatchHub) dispatch(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	h.mu.Lock()
	defer h.mu.Unlock()
	sent := map[*hubSource]bool{}
	for _, dir := range []string{filepath.Dir(name), name} {
		for s := range h.dirs[dir] {
			if !sent[s] {
				sent[s] = true
				s.push(ev)
			}
		}
	}
}

func (h *WatchHub) subscribe() *hubSource {
	s := &hubSource{hub: h, events: make(chan fsnotify.Event, hubQueue), errors: make(chan error, 16), dirs: map[string]bool{}}
	h.mu.Lock()
	h.subs[s] = true
	h.mu.Unlock()
	return s
}

// eventSource is what a Watcher reads raw events from: its own fsnotify
// watcher, or a subscription to a WatchHub.
type eventSource interface {
	Add(dir string) error
	Events() <-chan fsnotify.Event
	Errors() <-chan error
	Close() error
}

// ownSource is a Watcher's private fsnotify watcher.
type ownSource struct{ w *fsnotify.Watcher }

func (o ownSource) Add(dir string) error           { return o.w.Add(dir) }
func (o ownSource) Events() <-chan fsnotify.Event  { return o.w.Events }
func (o ownSource) Errors() <-chan error           { return o.w.Errors }
func (o ownSource) Close() error                   { return o.w.Close() }
func newOwnSource() (eventSource, error)           { w, err := fsnotify.NewWatcher(); return ownSource{w}, err }
func (h *WatchHub) source() (eventSource, error)   { return h.subscribe(), nil }
func (s *hubSource) Events() <-chan fsnotify.Event { return s.events }
func (s *hubSource) Errors() <-chan error          { return s.errors }

// hubSource is one Watcher's subscription to a hub.
type hubSource struct {
	hub    *WatchHub
	events chan fsnotify.Event
	errors chan error
	dirs   map[string]bool // guarded by hub.mu
	closed bool            // guarded by hub.mu
	// overflowQueued is set while an overflow error waits in errors: a
	// burst of overflows then costs one slot, not the whole buffer.
	overflowQueued atomic.Bool
}

// overflowReceived tells the hub that the subscriber took the queued
// overflow error; the next overflow is queued again.
func (s *hubSource) overflowReceived() { s.overflowQueued.Store(false) }

// push and pushErr run under hub.mu and never block the hub.
func (s *hubSource) push(ev fsnotify.Event) {
	if s.closed {
		return
	}
	select {
	case s.events <- ev:
	default:
		s.pushErr(fsnotify.ErrEventOverflow)
	}
}

func (s *hubSource) pushErr(err error) {
	if s.closed {
		return
	}
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		if s.overflowQueued.Load() {
			return // the reader will rescan anyway
		}
		// Set before the send: the reader clears it once it has the error.
		s.overflowQueued.Store(true)
		select {
		case s.errors <- err:
		default:
			s.overflowQueued.Store(false)
		}
		return
	}
	select {
	case s.errors <- err:
	default:
	}
}

// Add watches dir for this subscriber; the hub adds it to fsnotify only
// for its first subscriber.
func (s *hubSource) Add(dir string) error {
	dir = filepath.Clean(dir)
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.dirs[dir] {
		return nil
	}
	if len(h.dirs[dir]) == 0 {
		if err := h.fsw.Add(dir); err != nil {
			return err
		}
		h.dirs[dir] = map[*hubSource]bool{}
	}
	h.dirs[dir][s] = true
	s.dirs[dir] = true
	return nil
}

// Close ends the subscription and unwatches the directories nobody else
// watches.
func (s *hubSource) Close() error {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	delete(h.subs, s)
	for dir := range s.dirs {
		delete(h.dirs[dir], s)
		if len(h.dirs[dir]) == 0 {
			delete(h.dirs, dir)
			h.fsw.Remove(dir) // may fail if the dir is gone: nothing to undo
		}
	}
	close(s.events)
	close(s.errors)
	return nil
}
