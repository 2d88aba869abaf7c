package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/fsnotify/fsnotify"
)

// DefaultSettle is used when FileSpec.Settle is 0.
const DefaultSettle = 2 * time.Second

// DefaultFileWorkers is used when FileTriggerOptions.Workers is 0.
const DefaultFileWorkers = 4

// Names of the folders, beside each handled file, that the engine owns.
// They never produce events.
const (
	DoneDir   = "done"
	FailedDir = "failed"
)

// AfterKind says what happens to a file after its handler succeeded.
type AfterKind int

const (
	// AfterKeep leaves the file in place; the ledger stops it from being
	// handled again.
	AfterKeep AfterKind = iota
	// AfterDelete removes the file.
	AfterDelete
	// AfterMove moves the file into After.Dir.
	AfterMove
)

// After is the parsed "after" option of mailbot.on_file. The zero value is
// "keep".
type After struct {
	Kind AfterKind
	// Dir is the AfterMove target: relative to the handled file's
	// directory, or absolute.
	Dir string
}

// ParseAfter parses "keep" (also ""), "delete" or "move:<dir>".
func ParseAfter(s string) (After, error) {
	switch {
	case s == "" || s == "keep":
		return After{Kind: AfterKeep}, nil
	case s == "delete":
		return After{Kind: AfterDelete}, nil
	case strings.HasPrefix(s, "move:"):
		dir := strings.TrimPrefix(s, "move:")
		if strings.TrimSpace(dir) == "" {
			return After{}, fmt.Errorf("engine: after %q: move needs a directory", s)
		}
		if strings.ContainsAny(dir, "\x00\r\n") {
			return After{}, fmt.Errorf("engine: after %q: invalid directory", s)
		}
		return After{Kind: AfterMove, Dir: filepath.Clean(dir)}, nil
	}
	return After{}, fmt.Errorf("engine: after %q: want keep, delete or move:<dir>", s)
}

// String returns the option spelling.
func (a After) String() string {
	switch a.Kind {
	case AfterDelete:
		return "delete"
	case AfterMove:
		return "move:" + a.Dir
	}
	return "keep"
}

// ParseFileEvents parses the events option of mailbot.on_file: a list of
// "create" and "write". An empty list means both.
func ParseFileEvents(names []string) (Op, error) {
	if len(names) == 0 {
		return OpCreate | OpWrite, nil
	}
	var op Op
	for _, n := range names {
		switch n {
		case "create":
			op |= OpCreate
		case "write":
			op |= OpWrite
		default:
			return 0, fmt.Errorf("engine: file event %q: want create or write", n)
		}
	}
	return op, nil
}

// FileSpec is what a script asks to watch (mailbot.on_file's options).
type FileSpec struct {
	// Dir is the drop folder.
	Dir string
	// Pattern is a filepath.Match glob for the file's base name; "" matches
	// everything.
	Pattern string
	// Events selects files by how they changed: OpCreate for new files,
	// OpWrite for rewritten ones. 0 means both.
	Events Op
	// Recursive includes subdirectories.
	Recursive bool
	// Settle is how long size and modification time must stay unchanged
	// before a file counts as complete. 0 means DefaultSettle.
	Settle time.Duration
	// SkipExisting ignores files present at start until they change
	// (existing = false in Lua).
	SkipExisting bool
	// After is applied after the handler succeeds.
	After After
	// IgnoreDirs lists further directories never reported, relative to a
	// file's directory (like "done") or absolute. done/, failed/ and an
	// After.Dir target are always ignored.
	IgnoreDirs []string
	// Backoff governs retries asked for with Retry.
	Backoff Backoff
}

// FileTriggerOptions carries the host's wiring for a FileTrigger. The zero
// value is usable.
type FileTriggerOptions struct {
	// Clock times settling and retries; nil means RealClock().
	Clock Clock
	// Ledger, when set, makes handling exactly-once across restarts: file
	// versions it has seen are not emitted again. Without it, every start
	// re-emits the files present.
	Ledger *Ledger
	// Workers bounds the goroutines hashing settled files; 0 means
	// DefaultFileWorkers.
	Workers int
	// Hub, when set, shares one fsnotify watcher between triggers (see
	// WatchHub); nil gives the trigger a watcher of its own.
	Hub *WatchHub
	// Observed, when set, is called from the trigger goroutine after a
	// filesystem event has been taken into account. Tests driving a
	// FakeClock use it to know when they may Advance.
	Observed func(path string, op Op)
	// ObserveOnly is the dry-run mode: files are read where they are and
	// never moved, deleted or renamed. Complete reports what the after
	// action or the failure handling would have done (Disposition.DryRun)
	// without doing it, and writes no .error note; a file the ledger
	// knows as done is not finished off either. The ledger, when set, is
	// still written (a dry run gives it an overlay copy), so a file is
	// handed over once per dry run.
	ObserveOnly bool

	// source replaces the watcher's fsnotify source; tests inject events
	// and errors through it.
	source eventSource
}

// ReadyFile is a complete file, handed to the script handler.
type ReadyFile struct {
	Path    string
	Name    string // base name
	Dir     string // directory holding the file
	Op      Op     // OpCreate or OpWrite
	Size    int64
	ModTime time.Time
	SHA256  string // content hash, lower-case hex
	// Existing is true for a file that was present when the trigger
	// started.
	Existing bool
	// Attempt numbers the handler runs for this file version, from 1.
	Attempt int
}

// Key returns the file's ledger key.
func (r ReadyFile) Key() LedgerKey {
	return LedgerKey{Path: r.Path, Size: r.Size, ModTime: r.ModTime, SHA256: r.SHA256}
}

// RetryError marks a handler failure that should be retried with backoff
// rather than sending the file to failed/ at once.
type RetryError struct{ Err error }

// Error implements error.
func (e *RetryError) Error() string {
	if e.Err == nil {
		return "retry requested"
	}
	return e.Err.Error()
}

// Unwrap returns the handler's error.
func (e *RetryError) Unwrap() error { return e.Err }

// Retry wraps a handler error to ask for a retry with backoff.
func Retry(err error) error { return &RetryError{Err: err} }

// Disposition reports what Complete did with a file.
type Disposition struct {
	// Action is "kept", "deleted", "moved", "failed" or "retry".
	Action string
	// Path is where the file is now (for "deleted", where it was).
	Path string
	// RetryAt is when a retried file will be handed over again.
	RetryAt time.Time
	// DryRun is set under FileTriggerOptions.ObserveOnly: Action and Path
	// say what would have happened; the file is still where it was.
	DryRun bool
}

// FileTrigger turns a drop folder into a stream of complete files. A file
// is handed over once its size and modification time have not changed for
// the settle period, then Complete applies the after action or the failure
// handling.
//
// It is bounded regardless of how many files arrive: one goroutine owns all
// candidate files and a single Clock timer serves their deadlines, and a
// fixed pool of workers hashes settled files.
type FileTrigger struct {
	spec    FileSpec
	opts    FileTriggerOptions
	clock   Clock
	root    string
	ignores []string // cleaned ignore dirs, relative or absolute

	watcher *Watcher
	ready   chan ReadyFile
	errs    chan error
	jobs    chan fileJob
	results chan fileResult
	notes   chan completion
	sync    chan chan int

	mu       sync.Mutex // guards started and closed
	started  bool
	closed   bool
	closing  chan struct{}
	loopDone chan struct{}
	wg       sync.WaitGroup
	closeErr error

	// Loop-owned state.
	cands       map[string]*candidate
	deadlines   deadlineQueue
	timer       Timer
	outReady    []ReadyFile
	outErrs     []error
	dropped     int
	outJobs     []fileJob
	outstanding int // jobs handed out, results not yet back
	barriers    []chan int

	rescans atomic.Int64 // folder rescans after lost events, for tests
}

type phase int

const (
	settling  phase = iota // waiting for size and mtime to hold still
	hashing                // with a worker
	inflight               // emitted, waiting for Complete
	retryWait              // failed with Retry, waiting for the backoff
)

type candidate struct {
	op       Op
	existing bool
	size     int64
	mtime    time.Time
	phase    phase
	attempt  int  // handler runs so far
	dirty    bool // changed while hashing or in flight
}

type fileJob struct {
	path     string
	op       Op
	existing bool
	size     int64
	mtime    time.Time
	attempt  int
}

type resultKind int

const (
	resReady   resultKind = iota
	resChanged            // changed while hashing: settle again
	resSeen               // the ledger knows this version
	resGone
	resError
)

type fileResult struct {
	path string
	kind resultKind
	rf   ReadyFile
	err  error
}

type completion struct {
	path  string
	retry bool
	delay time.Duration
	done  chan struct{} // closed once the loop has applied it
}

// NewFileTrigger validates spec and prepares a trigger; Start begins
// watching.
func NewFileTrigger(spec FileSpec, opts FileTriggerOptions) (*FileTrigger, error) {
	if spec.Dir == "" {
		return nil, errors.New("engine: on_file: dir is required")
	}
	root, err := filepath.Abs(spec.Dir)
	if err != nil {
		return nil, fmt.Errorf("engine: on_file %s: %w", spec.Dir, err)
	}
	if spec.Pattern == "" {
		spec.Pattern = "*"
	}
	if _, err := filepath.Match(spec.Pattern, ""); err != nil {
		return nil, fmt.Errorf("engine: on_file %s: pattern %q: %w", spec.Dir, spec.Pattern, err)
	}
	if spec.Events == 0 {
		spec.Events = OpCreate | OpWrite
	}
	if spec.Settle <= 0 {
		spec.Settle = DefaultSettle
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultFileWorkers
	}
	clock := opts.Clock
	if clock == nil {
		clock = RealClock()
	}
	ignores := []string{DoneDir, FailedDir}
	if spec.After.Kind == AfterMove {
		ignores = append(ignores, spec.After.Dir)
	}
	for _, d := range spec.IgnoreDirs {
		if d != "" {
			ignores = append(ignores, d)
		}
	}
	for i, d := range ignores {
		ignores[i] = filepath.Clean(d)
	}
	t := &FileTrigger{
		spec:     spec,
		opts:     opts,
		clock:    clock,
		root:     root,
		ignores:  ignores,
		ready:    make(chan ReadyFile),
		errs:     make(chan error),
		jobs:     make(chan fileJob),
		results:  make(chan fileResult),
		notes:    make(chan completion),
		sync:     make(chan chan int),
		closing:  make(chan struct{}),
		loopDone: make(chan struct{}),
		cands:    make(map[string]*candidate),
	}
	t.deadlines.init()
	return t, nil
}

// Dir returns the absolute drop folder.
func (t *FileTrigger) Dir() string { return t.root }

// Ready returns the channel of complete files. Each must be passed to
// Complete once handled. The channel is closed after Close.
func (t *FileTrigger) Ready() <-chan ReadyFile { return t.ready }

// Errors returns the channel of errors met while watching, hashing or
// finishing files seen again. It is closed after Close.
func (t *FileTrigger) Errors() <-chan error { return t.errs }

// Start begins watching and, unless SkipExisting, schedules the files
// present at the call (ReadyFile.Existing). Calling it again does nothing.
func (t *FileTrigger) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("engine: on_file: trigger closed")
	}
	if t.started {
		return nil
	}
	// The watch is set up before the scan, so that a file arriving in
	// between is seen by one or both; the candidate map merges the two.
	w, err := NewWatcher(t.root, WatchOptions{
		Recursive: t.spec.Recursive,
		Debounce:  -1, // settling is done here, per file, with stat checks
		Filter:    t.wanted,
		SkipDir:   t.skipDir,
		Clock:     t.clock,
		Hub:       t.opts.Hub,
		source:    t.opts.source,
	})
	if err != nil {
		return fmt.Errorf("engine: on_file %s: %w", t.root, err)
	}
	t.watcher = w
	t.timer = t.clock.NewTimer(time.Hour)
	t.timer.Stop()
	t.started = true
	// Scanning before the loop starts makes "existing" mean "present when
	// Start returned". The loop is not running yet, so its state is ours.
	if !t.spec.SkipExisting {
		t.scan(true)
	}
	for range t.opts.Workers {
		t.wg.Add(1)
		go t.worker()
	}
	go t.run()
	return nil
}

// Close stops watching and waits for the trigger's goroutines. Files not
// yet delivered stay where they are and are found again at the next start.
// It is safe to call more than once, and without Start.
func (t *FileTrigger) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.closeErr
	}
	t.closed = true
	close(t.closing)
	if !t.started {
		close(t.loopDone)
		close(t.ready)
		close(t.errs)
		return nil
	}
	<-t.loopDone
	t.wg.Wait()
	t.closeErr = t.watcher.Close()
	return t.closeErr
}

// wanted is the file filter: matching name, not hidden or temporary, in the
// watched directory (or below it when recursive), outside ignored folders.
func (t *FileTrigger) wanted(path string) bool {
	name := filepath.Base(path)
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") ||
		strings.HasSuffix(name, ".part") || strings.HasSuffix(name, "~") {
		return false
	}
	if ok, _ := filepath.Match(t.spec.Pattern, name); !ok {
		return false
	}
	dir := filepath.Dir(path)
	if !t.spec.Recursive {
		return dir == t.root
	}
	return !t.skipDir(dir)
}

// skipDir reports whether dir is, or is inside, an ignored folder. Relative
// ignores apply beside every file, so they are checked against each
// directory level from the root down.
func (t *FileTrigger) skipDir(dir string) bool {
	if dir != t.root && !strings.HasPrefix(dir, t.root+string(filepath.Separator)) {
		return true // outside the tree
	}
	within := func(d, base string) bool {
		return d == base || strings.HasPrefix(d, base+string(filepath.Separator))
	}
	for _, ig := range t.ignores {
		if filepath.IsAbs(ig) {
			if within(dir, ig) {
				return true
			}
			continue
		}
		for a := dir; ; a = filepath.Dir(a) {
			if within(dir, filepath.Join(a, ig)) && filepath.Join(a, ig) != a {
				return true
			}
			if a == t.root || a == filepath.Dir(a) {
				break
			}
		}
	}
	return false
}

func (t *FileTrigger) run() {
	defer close(t.loopDone)
	defer close(t.ready)
	defer close(t.errs)
	defer t.timer.Stop()

	wEvents, wErrors := t.watcher.Events(), t.watcher.Errors()
	for {
		var (
			rOut  chan ReadyFile
			rHead ReadyFile
			eOut  chan error
			eHead error
			jOut  chan fileJob
			jHead fileJob
		)
		if len(t.outReady) > 0 {
			rOut, rHead = t.ready, t.outReady[0]
		}
		if len(t.outErrs) > 0 {
			eOut, eHead = t.errs, t.outErrs[0]
		}
		if len(t.outJobs) > 0 {
			jOut, jHead = t.jobs, t.outJobs[0]
		}
		select {
		case ev, ok := <-wEvents:
			if !ok {
				wEvents = nil
				continue
			}
			t.onEvent(ev)
			if t.opts.Observed != nil {
				t.opts.Observed(ev.Path, ev.Op)
			}
		case err, ok := <-wErrors:
			if !ok {
				wErrors = nil
				continue
			}
			t.pushError(err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: look at the folder again, once per
				// burst (the Watcher reports a burst as one error).
				// Versions already handled are recognised by the ledger.
				t.rescans.Add(1)
				t.scan(false)
			}
		case <-t.timer.C():
			t.processDue()
		case r := <-t.results:
			t.outstanding--
			t.onResult(r)
		case c := <-t.notes:
			t.onCompletion(c)
			close(c.done)
		case rOut <- rHead:
			t.outReady[0] = ReadyFile{}
			t.outReady = t.outReady[1:]
		case eOut <- eHead:
			t.outErrs[0] = nil
			t.outErrs = t.outErrs[1:]
		case jOut <- jHead:
			t.outJobs = t.outJobs[1:]
			t.outstanding++
		case reply := <-t.sync:
			t.processDue()
			t.barriers = append(t.barriers, reply)
		case <-t.closing:
			return
		}
		if len(t.barriers) > 0 && t.outstanding == 0 && len(t.outJobs) == 0 {
			for _, b := range t.barriers {
				b <- len(t.outReady)
			}
			t.barriers = nil
		}
	}
}

// barrier processes everything due at the clock's current time, waits
// until no file is being hashed, and returns the number of ready files not
// yet received. Tests use it to assert that nothing more is coming.
func (t *FileTrigger) barrier() int {
	reply := make(chan int, 1)
	select {
	case t.sync <- reply:
	case <-t.loopDone:
		return 0
	}
	select {
	case n := <-reply:
		return n
	case <-t.loopDone:
		return 0
	}
}

// scan adds every wanted regular file under the root that is not already
// tracked.
func (t *FileTrigger) scan(existing bool) {
	err := filepath.WalkDir(t.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if path == t.root {
				return nil
			}
			if !t.spec.Recursive || t.skipDir(path) {
				return filepath.SkipDir
			}
			return nil
		}
		if !t.wanted(path) || t.cands[path] != nil {
			return nil
		}
		t.track(path, OpCreate, existing)
		return nil
	})
	if err != nil {
		t.pushError(fmt.Errorf("engine: on_file %s: scan: %w", t.root, err))
	}
	t.rearm()
}

// track starts settling a file not yet tracked.
func (t *FileTrigger) track(path string, op Op, existing bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	t.cands[path] = &candidate{op: op, existing: existing, size: fi.Size(), mtime: fi.ModTime(), phase: settling}
	t.deadlines.set(path, t.clock.Now().Add(t.spec.Settle))
}

func (t *FileTrigger) onEvent(ev WatchEvent) {
	c := t.cands[ev.Path]
	if ev.Op.Has(OpRemove) {
		if c == nil {
			return
		}
		switch c.phase {
		case settling, retryWait:
			delete(t.cands, ev.Path)
			t.deadlines.remove(ev.Path)
			t.rearm()
		default:
			c.dirty = true
		}
		return
	}
	if c == nil {
		op := OpWrite
		if ev.Op.Has(OpCreate) {
			op = OpCreate
		}
		t.track(ev.Path, op, false)
		t.rearm()
		return
	}
	switch c.phase {
	case settling:
		// Any activity restarts the quiet period, measured against the
		// file as it is now.
		if fi, err := os.Stat(ev.Path); err == nil {
			c.size, c.mtime = fi.Size(), fi.ModTime()
		}
		t.deadlines.set(ev.Path, t.clock.Now().Add(t.spec.Settle))
		t.rearm()
	case retryWait:
		// New content while waiting to retry the old: start over.
		delete(t.cands, ev.Path)
		t.deadlines.remove(ev.Path)
		t.track(ev.Path, OpWrite, false)
		t.rearm()
	default:
		c.dirty = true
	}
}

func (t *FileTrigger) rearm() { t.deadlines.arm(t.timer, t.clock) }

// processDue re-examines every file whose deadline has passed.
func (t *FileTrigger) processDue() {
	now := t.clock.Now()
	for _, path := range t.deadlines.popDue(now) {
		c := t.cands[path]
		if c == nil {
			continue
		}
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.pushError(fmt.Errorf("engine: on_file %q: %w", path, err))
			}
			delete(t.cands, path)
			continue
		}
		if c.phase == settling {
			if fi.Size() != c.size || !fi.ModTime().Equal(c.mtime) {
				// Still being written: wait for another quiet period.
				c.size, c.mtime = fi.Size(), fi.ModTime()
				t.deadlines.set(path, now.Add(t.spec.Settle))
				continue
			}
			if !c.existing && c.op&t.spec.Events == 0 {
				delete(t.cands, path)
				continue
			}
		}
		c.size, c.mtime = fi.Size(), fi.ModTime()
		c.phase = hashing
		c.dirty = false
		t.outJobs = append(t.outJobs, fileJob{path: path, op: c.op, existing: c.existing,
			size: c.size, mtime: c.mtime, attempt: c.attempt + 1})
	}
	t.rearm()
}

func (t *FileTrigger) onResult(r fileResult) {
	c := t.cands[r.path]
	if c == nil || c.phase != hashing {
		return
	}
	if r.kind == resSeen && r.err != nil {
		t.pushError(r.err)
		r.err = nil
	}
	if c.dirty && r.kind != resGone {
		// Touched while hashing: whatever the worker saw may be stale.
		r.kind = resChanged
	}
	switch r.kind {
	case resReady:
		c.phase = inflight
		c.attempt = r.rf.Attempt
		t.outReady = append(t.outReady, r.rf)
	case resChanged:
		c.phase, c.dirty = settling, false
		if fi, err := os.Stat(r.path); err == nil {
			c.size, c.mtime = fi.Size(), fi.ModTime()
		}
		t.deadlines.set(r.path, t.clock.Now().Add(t.spec.Settle))
		t.rearm()
	case resError:
		t.pushError(r.err)
		delete(t.cands, r.path)
	case resSeen:
		if r.err != nil {
			t.pushError(r.err)
		}
		delete(t.cands, r.path)
	case resGone:
		delete(t.cands, r.path)
	}
}

func (t *FileTrigger) onCompletion(n completion) {
	c := t.cands[n.path]
	if c == nil || c.phase != inflight {
		return
	}
	if n.retry {
		c.phase = retryWait
		t.deadlines.set(n.path, t.clock.Now().Add(n.delay))
		t.rearm()
		return
	}
	dirty := c.dirty
	delete(t.cands, n.path)
	if dirty {
		// Rewritten while the handler ran (and still there): a new version.
		t.track(n.path, OpWrite, false)
		t.rearm()
	}
}

func (t *FileTrigger) pushError(err error) {
	if len(t.outErrs) >= maxPendingErrors {
		t.dropped++
		return
	}
	if t.dropped > 0 {
		err = fmt.Errorf("%w (and %d earlier errors dropped: Errors not drained)", err, t.dropped)
		t.dropped = 0
	}
	t.outErrs = append(t.outErrs, err)
}

func (t *FileTrigger) worker() {
	defer t.wg.Done()
	for {
		select {
		case j := <-t.jobs:
			r := t.hash(j)
			select {
			case t.results <- r:
			case <-t.closing:
				return
			}
		case <-t.closing:
			return
		}
	}
}

// hash computes the content hash of a settled file, checking that it did
// not change meanwhile, and consults the ledger.
func (t *FileTrigger) hash(j fileJob) fileResult {
	res := fileResult{path: j.path}
	f, err := os.Open(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		res.kind = resGone
		return res
	}
	if err != nil {
		res.kind, res.err = resError, fmt.Errorf("engine: on_file %q: %w", j.path, err)
		return res
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		res.kind, res.err = resError, fmt.Errorf("engine: on_file %q: hash: %w", j.path, err)
		return res
	}
	fi, err := os.Stat(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		res.kind = resGone
		return res
	}
	if err != nil || fi.Size() != j.size || !fi.ModTime().Equal(j.mtime) {
		res.kind = resChanged
		return res
	}
	res.rf = ReadyFile{
		Path: j.path, Name: filepath.Base(j.path), Dir: filepath.Dir(j.path),
		Op: j.op, Size: j.size, ModTime: j.mtime, SHA256: hex.EncodeToString(h.Sum(nil)),
		Existing: j.existing, Attempt: j.attempt,
	}
	if t.opts.Ledger != nil {
		e, ok := t.opts.Ledger.Lookup(res.rf.Key())
		if ok && e.Outcome == OutcomeRetrying {
			// Retried before a restart: the count goes on from there.
			if e.Attempts >= res.rf.Attempt {
				res.rf.Attempt = e.Attempts + 1
			}
			ok = false
		}
		if ok {
			res.kind = resSeen
			if e.Outcome == OutcomeDone && !t.opts.ObserveOnly {
				// Handled before a crash cut the after action short:
				// finish it now, without running the handler again.
				if _, err := t.applyAfter(j.path); err != nil {
					res.err = err
				}
			}
			return res
		}
	}
	res.kind = resReady
	return res
}

// Complete finishes a file handed over on Ready, given the handler's
// result:
//
//   - nil: the ledger records it as done and the after action is applied;
//   - an error wrapped with Retry, attempts left: the file stays and is
//     handed over again after the backoff delay;
//   - any other error, or retries exhausted: the file is moved to failed/
//     beside it, with <name>.error holding the error text, the time and the
//     attempt count. Failed files are never deleted.
//
// Complete does the file operations in the calling goroutine and is safe
// to call concurrently for different files.
func (t *FileTrigger) Complete(rf ReadyFile, handlerErr error) (Disposition, error) {
	if handlerErr == nil {
		var errs []error
		if t.opts.Ledger != nil {
			// Recorded before the after action: if a crash comes between
			// the two, the next start finds the version in the ledger and
			// finishes the after action instead of running the handler.
			if err := t.opts.Ledger.Record(rf.Key(), OutcomeDone); err != nil {
				errs = append(errs, err)
			}
		}
		d, err := t.applyAfter(rf.Path)
		if err != nil {
			errs = append(errs, err)
		}
		t.notify(completion{path: rf.Path})
		return d, errors.Join(errs...)
	}
	var re *RetryError
	if errors.As(handlerErr, &re) && !t.spec.Backoff.Exhausted(rf.Attempt) {
		var err error
		if t.opts.Ledger != nil {
			// Kept across restarts, so that a restart does not give the
			// file a fresh set of attempts.
			if lerr := t.opts.Ledger.RecordAttempts(rf.Key(), rf.Attempt); lerr != nil {
				err = lerr
			}
		}
		delay := t.spec.Backoff.Delay(rf.Attempt)
		t.notify(completion{path: rf.Path, retry: true, delay: delay})
		return Disposition{Action: "retry", Path: rf.Path, RetryAt: t.clock.Now().Add(delay), DryRun: t.opts.ObserveOnly}, err
	}
	dest, err := t.moveToFailed(rf, handlerErr)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if t.opts.Ledger != nil {
		// Recorded even if the move failed, so a file that cannot be moved
		// is not retried forever.
		if err := t.opts.Ledger.Record(rf.Key(), OutcomeFailed); err != nil {
			errs = append(errs, err)
		}
	}
	t.notify(completion{path: rf.Path})
	if dest == "" {
		dest = rf.Path
	}
	return Disposition{Action: "failed", Path: dest, DryRun: t.opts.ObserveOnly}, errors.Join(errs...)
}

// notify tells the loop a file is finished and waits until the loop has
// acted on it, so that when Complete returns a retry timer is armed (a
// FakeClock advanced right after sees it).
func (t *FileTrigger) notify(c completion) {
	c.done = make(chan struct{})
	select {
	case t.notes <- c:
		<-c.done
	case <-t.loopDone:
	}
}

// applyAfter carries out the after action for a handled file (under
// ObserveOnly, says what it would do).
func (t *FileTrigger) applyAfter(path string) (Disposition, error) {
	if t.opts.ObserveOnly {
		d := Disposition{Action: "kept", Path: path, DryRun: true}
		switch t.spec.After.Kind {
		case AfterDelete:
			d.Action = "deleted"
		case AfterMove:
			d.Action, d.Path = "moved", wouldMoveTo(path, t.afterDir(path))
		}
		return d, nil
	}
	switch t.spec.After.Kind {
	case AfterDelete:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Disposition{}, fmt.Errorf("engine: on_file: delete %q: %w", path, err)
		}
		return Disposition{Action: "deleted", Path: path}, nil
	case AfterMove:
		dir := t.afterDir(path)
		dest, err := moveNoClobber(path, dir)
		if err != nil {
			return Disposition{}, fmt.Errorf("engine: on_file: move %q to %s: %w", path, dir, err)
		}
		return Disposition{Action: "moved", Path: dest}, nil
	}
	return Disposition{Action: "kept", Path: path}, nil
}

// afterDir is the folder a handled file at path moves to (AfterMove).
func (t *FileTrigger) afterDir(path string) string {
	dir := t.spec.After.Dir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(path), dir)
	}
	return dir
}

// moveToFailed moves the file into failed/ beside it and writes the note
// (under ObserveOnly, returns where it would go and does neither).
func (t *FileTrigger) moveToFailed(rf ReadyFile, handlerErr error) (string, error) {
	dir := filepath.Join(filepath.Dir(rf.Path), FailedDir)
	if t.opts.ObserveOnly {
		return wouldMoveTo(rf.Path, dir), nil
	}
	dest, err := moveNoClobber(rf.Path, dir)
	if err != nil {
		return "", fmt.Errorf("engine: on_file: move %q to %s: %w", rf.Path, dir, err)
	}
	note := failureNote(rf, t.clock.Now(), handlerErr)
	if err := writeFileAtomic(dest+".error", []byte(note), 0o644); err != nil {
		return dest, fmt.Errorf("engine: on_file: write error note for %q: %w", dest, err)
	}
	return dest, nil
}

// failureNote is the text of a failed file's .error note: one "key: value"
// line per field. The file name is quoted (strconv.Quote), as a dropper
// chooses it and a newline in it must not forge a line; the error comes
// last, its further lines (a Lua traceback) indented and its control
// characters escaped, so no line of it can pass for a field either.
func failureNote(rf ReadyFile, now time.Time, handlerErr error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "file: %s\nsha256: %s\nfailed_at: %s\nattempts: %d\nerror: ",
		strconv.Quote(rf.Path), rf.SHA256, now.UTC().Format(time.RFC3339), rf.Attempt)
	for i, line := range strings.Split(handlerErr.Error(), "\n") {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(escapeControl(line))
	}
	b.WriteString("\n")
	return b.String()
}

// escapeControl replaces control characters other than tab with Go
// escapes (\r, \x00, \u2028...), leaving the rest of s as it is.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, needsEscape) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if needsEscape(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r != '\t' && (unicode.IsControl(r) || r == '\u2028' || r == '\u2029')
}

// moveNoClobber moves src into dir (created if needed) under its own name,
// or name-1.ext, name-2.ext... if taken: an existing file is never
// overwritten. A hard link claims the name atomically (it fails if the name
// exists, where rename would replace it); across file systems the content
// is copied into an exclusively created file instead.
func moveNoClobber(src, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := filepath.Base(src)
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 0; i < 10000; i++ {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s-%d%s", stem, i, ext)
		}
		dst := filepath.Join(dir, cand)
		err := os.Link(src, dst)
		if err == nil {
			if err := os.Remove(src); err != nil {
				return dst, fmt.Errorf("remove original: %w", err)
			}
			return dst, nil
		}
		if errors.Is(err, fs.ErrExist) {
			if sameFile(src, dst) {
				// Left by a crash between link and remove.
				if err := os.Remove(src); err != nil {
					return dst, fmt.Errorf("remove original: %w", err)
				}
				return dst, nil
			}
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Lstat(src); errors.Is(serr, fs.ErrNotExist) {
				return "", err
			}
		}
		// Links unsupported or another device: copy instead.
		ok, err := copyExclusive(src, dst)
		if err != nil {
			return "", err
		}
		if !ok {
			continue
		}
		if err := os.Remove(src); err != nil {
			return dst, fmt.Errorf("remove original: %w", err)
		}
		return dst, nil
	}
	return "", fmt.Errorf("no free name for %q in %s", name, dir)
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// copyExclusive copies src to a newly created dst, keeping the
// modification time. It reports false if dst already exists.
func copyExclusive(src, dst string) (bool, error) {
	in, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return false, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return false, fmt.Errorf("copy: %w", err)
	}
	if err := os.Chtimes(dst, fi.ModTime(), fi.ModTime()); err != nil {
		return true, fmt.Errorf("keep modification time: %w", err)
	}
	return true, nil
}
