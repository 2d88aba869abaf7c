package main

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
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/outbox"
)

// dryRunEnv is one dry run's isolation from the real world: the capture
// server that takes every SMTP connection, and (with a config) the state
// overlay, <dir>/state, that holds everything mailbot would write to
// state_dir: the file ledger, mailbot.state, the schedules' last runs and
// the outbox (with its idempotency keys).
//
// The overlay starts afresh, seeded from the real state_dir, at every dry
// run, so two dry runs in a row do the same thing; the real state_dir is
// only read. The overlay's lock (<dir>/state/mailbot.lock) keeps two dry
// runs from sharing one folder at the same time; the real state_dir's lock
// is neither taken nor created, so a dry run can run beside the daemon.
//
// run, exec, send and fire get theirs from setupDryRun (through
// prepareScripts, which also points scripts, accounts and the outbox at
// it); engineConfig and lockState then give the engine the overlay.
type dryRunEnv struct {
	// dir is the dry-run folder: <time>-<n>.eml and .transcript files.
	dir string
	// stateDir is the overlay, <dir>/state; "" without a config.
	stateDir string
	// realStateDir is the config's state_dir, only ever read.
	realStateDir string
	// lock is held on stateDir until Close.
	lock    *engine.StateLock
	capture *capture
	closed  bool
}

// dryDatabases returns where a dry run builds the seeded SQLite databases
// whose file does not exist yet (<dir>/databases), or "" outside a dry run:
// a dry run creates nothing outside its folder.
func (e *scriptEnv) dryDatabases() string {
	if e == nil || e.dry == nil {
		return ""
	}
	return filepath.Join(e.dry.dir, "databases")
}

// dryRunStateDir is the overlay's folder inside the dry-run folder.
const dryRunStateDir = "state"

// setupDryRun starts the dry run in dir ("" means the default of
// dryRunFlag.folder): it locks and seeds the state overlay from cfg's
// state_dir (cfg nil: no overlay, as without a config nothing has state)
// and starts the capture server. Close undoes it.
func setupDryRun(cfg *Config, dir string, logger *slog.Logger) (*dryRunEnv, error) {
	if dir == "" {
		dir = (&dryRunFlag{on: true}).folder(cfg)
	}
	d := &dryRunEnv{dir: dir}
	if cfg != nil {
		d.realStateDir = cfg.Resolve(cfg.StateDir)
		if err := checkDryRunFolder(dir, d.realStateDir); err != nil {
			return nil, err
		}
		d.stateDir = filepath.Join(dir, dryRunStateDir)
		lock, err := engine.LockStateDir(d.stateDir)
		if err != nil {
			var inUse *engine.StateDirInUseError
			if errors.As(err, &inUse) {
				return nil, fmt.Errorf("dry run: folder %s is in use by another dry run (mailbot PID %d); give this one another folder with --dry-run DIR", dir, inUse.PID)
			}
			return nil, fmt.Errorf("dry run: %w", err)
		}
		d.lock = lock
		// The outbox overlay starts empty; the real spool is read
		// through (see outboxOptions).
		if err := os.RemoveAll(filepath.Join(d.stateDir, "outbox")); err != nil {
			d.Close()
			return nil, fmt.Errorf("dry run: clear the outbox overlay: %w", err)
		}
		if err := engine.SeedDryRunState(d.realStateDir, d.stateDir); err != nil {
			d.Close()
			return nil, fmt.Errorf("dry run: %w", err)
		}
	}
	c, err := startCapture(dir, logger)
	if err != nil {
		d.Close()
		return nil, err
	}
	d.capture = c
	logger.Info("dry run: nothing leaves this machine and state_dir is only read; messages are written to a folder", "dir", dir, "state_overlay", d.stateDir)
	return d, nil
}

// checkDryRunFolder refuses a dry-run folder that would put the dry run's
// files among the real state: state_dir itself, a folder holding it, or a
// folder inside what mailbot keeps there. Any other folder in state_dir
// (the default dry-run/, or dry-run-2/) is the dry run's own.
func checkDryRunFolder(dir, stateDir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("dry run: folder %s: %w", dir, err)
	}
	state, err := filepath.Abs(stateDir)
	if err != nil {
		return fmt.Errorf("dry run: state_dir %s: %w", stateDir, err)
	}
	within := func(p, parent string) bool {
		rel, err := filepath.Rel(parent, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
	}
	if within(state, abs) {
		return fmt.Errorf("dry run: folder %s holds state_dir %s; choose a folder of its own (default %s)", dir, stateDir, filepath.Join(stateDir, "dry-run"))
	}
	for _, owned := range []string{"state", "outbox", "oauth", filesArea, engine.LockFileName, "ledger.jsonl"} {
		if within(abs, filepath.Join(state, owned)) {
			return fmt.Errorf("dry run: folder %s is inside mailbot's state (%s); choose a folder of its own (default %s)", dir, filepath.Join(stateDir, owned), filepath.Join(stateDir, "dry-run"))
		}
	}
	return nil
}

// outboxDir is where mail.send queues in the dry run.
func (d *dryRunEnv) outboxDir() string { return filepath.Join(d.stateDir, "outbox") }

// outboxOptions makes the overlay outbox read the real one through: its
// idempotency keys count, so a key the real outbox has seen is a
// duplicate in the dry run as well.
func (d *dryRunEnv) outboxOptions(o outbox.Options) outbox.Options {
	o.Base = filepath.Join(d.realStateDir, "outbox")
	return o
}

// deliverAtOnce is a dry run's mail.send (exec, fire): it queues into the
// overlay outbox and delivers to the capture server before returning. Under
// run --dry-run the outbox's delivery loop does that instead (run gives the
// engine the outbox itself): DeliverOnce would find the loop running and
// report outbox.ErrDelivering, which is ignored.
type deliverAtOnce struct {
	ob       *outbox.Outbox
	accounts map[string]outbox.Account
	log      *slog.Logger
}

// Enqueue implements luabind.Enqueuer.
func (d *deliverAtOnce) Enqueue(ctx context.Context, env outbox.Envelope, data []byte) (string, bool, error) {
	id, dup, err := d.ob.Enqueue(ctx, env, data)
	if err != nil || dup {
		return id, dup, err
	}
	rep, derr := d.ob.DeliverOnce(ctx, d.accounts)
	switch {
	case errors.Is(derr, outbox.ErrDelivering):
	case derr != nil:
		d.log.Warn("dry run: delivering to the capture server", "id", id, "error", derr)
	case rep.Deferred > 0 || rep.Bounced > 0:
		d.log.Warn("dry run: the capture server did not take every message; see the .transcript files", "deferred", rep.Deferred, "bounced", rep.Bounced)
	}
	return id, dup, nil
}

// EnqueueBatch implements luabind.BatchEnqueuer: the list is queued with
// one flush, then delivered to the capture server once.
func (d *deliverAtOnce) EnqueueBatch(ctx context.Context, subs []outbox.Submission) ([]outbox.Enqueued, error) {
	res, err := d.ob.EnqueueBatch(ctx, subs)
	if err != nil {
		return res, err
	}
	rep, derr := d.ob.DeliverOnce(ctx, d.accounts)
	switch {
	case errors.Is(derr, outbox.ErrDelivering):
	case derr != nil:
		d.log.Warn("dry run: delivering to the capture server", "messages", len(subs), "error", derr)
	case rep.Deferred > 0 || rep.Bounced > 0:
		d.log.Warn("dry run: the capture server did not take every message; see the .transcript files", "deferred", rep.Deferred, "bounced", rep.Bounced)
	}
	return res, nil
}

// Close stops the capture server (writing the last transcripts) and
// releases the overlay. The overlay's files stay, for a look at what the
// dry run would have written; the next dry run starts them afresh.
func (d *dryRunEnv) Close() error {
	if d == nil || d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.capture != nil {
		errs = append(errs, d.capture.Close())
	}
	if d.lock != nil {
		errs = append(errs, d.lock.Release())
	}
	return errors.Join(errs...)
}

// capture is the local SMTP server of a dry run. Every message it accepts
// is written at once to dir as <timestamp>-<n>.eml; the client-side SMTP
// transcript of the connection that sent it goes to the matching
// <timestamp>-<n>.transcript.
//
// Pairing a transcript with a message is exact, whatever the concurrency:
// the capture server ends its reply to the final "." with the message's
// queue ID ("250 2.0.0 OK: queued as Q000007"), which only the connection
// that sent the message reads. Each connection's transcript writer takes
// the ID from that reply and claims the message filed under it.
// Connections that sent no message (a VRFY probe, a refused login) are
// written as <timestamp>-conn-<n>.transcript when the capture closes.
type capture struct {
	srv    *devserver.Server
	dir    string
	logger *slog.Logger

	mu      sync.Mutex
	n       int               // messages written so far
	pending map[string]string // queue ID → file base name, not yet claimed
	conns   []*transcriptBuf
	err     error // first write error
}

// startCapture starts the capture server on 127.0.0.1:0 and creates dir.
func startCapture(dir string, logger *slog.Logger) (*capture, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dry run: create %s: %w", dir, err)
	}
	c := &capture{dir: dir, logger: logger, pending: map[string]string{}}
	srv, err := devserver.Start(devserver.Config{
		Addr: "127.0.0.1:0",
		// Any user and password: the script's real credentials may not
		// even be available where the dry run happens.
		Users:   nil,
		MaxKept: 1, // messages live on disk, not in memory
		Hooks:   devserver.Hooks{Data: c.onData},
		// No server log: onData logs each capture with its file name.
	})
	if err != nil {
		return nil, fmt.Errorf("dry run: start capture server: %w", err)
	}
	c.srv = srv
	return c, nil
}

// Options returns the luabind dry-run settings pointing at the capture.
func (c *capture) Options() *luabind.DryRun {
	return &luabind.DryRun{Addr: c.srv.Addr(), RootCAs: c.srv.CertPool(), Transcript: c.Transcript}
}

// onData stores a message the moment the server has it, so a long dry run
// of "mailbot run" shows files appearing as scripts send.
func (c *capture) onData(m *devserver.Message) *devserver.Reject {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	base := fmt.Sprintf("%s-%d", time.Now().UTC().Format("20060102T150405.000000Z"), c.n)
	path := filepath.Join(c.dir, base+".eml")
	if err := os.WriteFile(path, m.Data, 0o644); err != nil {
		if c.err == nil {
			c.err = fmt.Errorf("dry run: %w", err)
		}
		return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 3, 0}, Message: "dry run: cannot store message"}
	}
	c.pending[m.QueueID] = base
	c.logger.Info("dry run: message captured", "file", path, "from", m.From, "to", strings.Join(m.To, ", "), "bytes", len(m.Data))
	return nil
}

// Transcript returns the writer for one client connection's transcript.
func (c *capture) Transcript(hostport string) io.Writer {
	t := &transcriptBuf{c: c}
	fmt.Fprintf(&t.buf, "# mailbot dry run: connection meant for %s, sent to the local capture server\n", hostport)
	c.mu.Lock()
	c.conns = append(c.conns, t)
	c.mu.Unlock()
	return t
}

// claim hands the message with the given queue ID to the transcript that
// read the ID in its server's reply; "" when there is none.
func (c *capture) claim(queueID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	base, ok := c.pending[queueID]
	if ok {
		delete(c.pending, queueID)
	}
	return base
}

func (c *capture) writeTranscript(base string, data []byte) {
	path := filepath.Join(c.dir, base+".transcript")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = fmt.Errorf("dry run: %w", err)
		}
		c.mu.Unlock()
	}
}

// Count returns how many messages were captured.
func (c *capture) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Close stops the server and writes the final transcripts: the full
// conversation (QUIT included) for each connection's last message, and the
// transcripts of connections that sent nothing.
func (c *capture) Close() error {
	err := c.srv.Close()
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	stamp := time.Now().UTC().Format("20060102T150405.000000Z")
	for i, t := range conns {
		t.mu.Lock()
		data := append([]byte(nil), t.buf.Bytes()...)
		last := t.last
		t.mu.Unlock()
		if last != "" {
			c.writeTranscript(last, data)
		} else {
			c.writeTranscript(fmt.Sprintf("%s-conn-%d", stamp, i+1), data)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if err != nil {
		return fmt.Errorf("dry run: stop capture server: %w", err)
	}
	return nil
}

// transcriptBuf collects one connection's "C: "/"S: " lines and spots the
// end of each message: the positive server reply to "C: ." (or to the last
// BDAT chunk), which carries the message's queue ID. With PIPELINING the
// replies follow several commands, so the client's lines wait in order
// for theirs: each command line gets one reply.
type transcriptBuf struct {
	c *capture

	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	// waiting holds, for each command sent and not answered yet, whether
	// it ended a message.
	waiting []bool
	last    string // base name of the last message this connection sent
}

func (t *transcriptBuf) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(t.partial[:i]), "\r")
		t.partial = t.partial[i+1:]
		t.line(line)
	}
	return len(p), nil
}

// queuedAs is how the capture server's accepting reply ends.
const queuedAs = " queued as "

// line watches for the reply to the end of a message.
func (t *transcriptBuf) line(line string) {
	switch {
	case strings.HasPrefix(line, "C: <message body"), strings.HasPrefix(line, "C: <chunk"),
		strings.HasPrefix(line, `C: "`):
		// Body summaries and bodies (debug_body) get no reply.
	case strings.HasPrefix(line, "C: "):
		cmd := strings.TrimPrefix(line, "C: ")
		t.waiting = append(t.waiting, cmd == "." || strings.HasPrefix(cmd, "BDAT ") && strings.HasSuffix(cmd, " LAST"))
	case strings.HasPrefix(line, "S: "):
		reply := strings.TrimPrefix(line, "S: ")
		if len(reply) >= 4 && reply[3] == '-' {
			return // a continuation line; wait for the last one
		}
		if len(t.waiting) == 0 {
			return // the greeting
		}
		end := t.waiting[0]
		t.waiting = t.waiting[1:]
		if !end {
			return
		}
		i := strings.LastIndex(reply, queuedAs)
		if !strings.HasPrefix(reply, "2") || i < 0 {
			return
		}
		if base := t.c.claim(strings.TrimSpace(reply[i+len(queuedAs):])); base != "" {
			t.last = base
			t.c.writeTranscript(base, t.buf.Bytes())
		}
	}
}
