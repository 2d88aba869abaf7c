package outbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
)

func TestEnqueueInvalid(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		env  Envelope
	}{
		{"no account", Envelope{To: []string{"a@x"}}},
		{"no recipient", Envelope{Account: "default"}},
		{"empty recipient", Envelope{Account: "default", To: []string{""}}},
		{"CRLF in recipient", Envelope{Account: "default", To: []string{"a@x>\r\nDATA"}}},
		{"CRLF in sender", Envelope{Account: "default", From: "a\nb", To: []string{"a@x"}}},
		{"CRLF in key", Envelope{Account: "default", To: []string{"a@x"}, Key: "k\r\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := e.ob.Enqueue(context.Background(), tc.env, testMsg(1)); !errors.Is(err, ErrInvalidEnvelope) {
				t.Errorf("Enqueue = %v, want ErrInvalidEnvelope", err)
			}
		})
	}
}

func TestEnqueueStoresInspectableFile(t *testing.T) {
	e := newEnv(t, nil)
	id := e.enqueue(t, 7, "a@mailbot.test")
	b, err := os.ReadFile(filepath.Join(e.dir, "queue", id))
	if err != nil {
		t.Fatal(err)
	}
	meta, data, ok := bytes.Cut(b, []byte("\n"))
	if !ok || !bytes.Equal(data, testMsg(7)) || !bytes.Contains(meta, []byte(`"to":["a@mailbot.test"]`)) {
		t.Fatalf("spool file:\n%s", b)
	}
	it, got, err := e.ob.Get(id)
	if err != nil || !bytes.Equal(got, testMsg(7)) || it.Key != "<m7@mailbot.test>" || it.State != StateQueued {
		t.Fatalf("Get = %+v, %q, %v", it, got, err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.KeyRetention = 7 * 24 * time.Hour })
	ctx := context.Background()
	env := Envelope{Account: "default", To: []string{"a@mailbot.test"}}
	id1 := e.enqueue(t, 1, "a@mailbot.test")

	// Same Message-ID (the default key): no-op returning the first id.
	id, dup, err := e.ob.Enqueue(ctx, env, testMsg(1))
	if err != nil || !dup || id != id1 {
		t.Fatalf("same Message-ID: %q %v %v, want %q dup", id, dup, err, id1)
	}
	// Explicit keys, concurrently: exactly one message is stored.
	keyed := env
	keyed.Key = "nightly-2026-03-02"
	var wg sync.WaitGroup
	ids := make([]string, 20)
	var dups atomic.Int32
	for i := range ids {
		wg.Go(func() {
			id, dup, err := e.ob.Enqueue(ctx, keyed, testMsg(100+i))
			if err != nil {
				t.Error(err)
			}
			if dup {
				dups.Add(1)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	if dups.Load() != 19 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 1 {
		t.Fatalf("20 concurrent enqueues of one key: %d duplicates, ids %v", dups.Load(), ids)
	}
	// Delivered messages keep their key for the window.
	srv := startServer(t, devserver.Hooks{})
	if rep := e.deliverOnce(t, account(srv.Addr())); rep.Sent != 2 {
		t.Fatalf("report %+v", rep)
	}
	if id, dup, _ := e.ob.Enqueue(ctx, keyed, testMsg(999)); !dup || id != ids[0] {
		t.Errorf("after delivery: %q dup=%v, want %q dup", id, dup, ids[0])
	}
	// After the window the key is free again.
	e.clock.Advance(7*24*time.Hour + time.Second)
	if err := e.ob.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, dup, err := e.ob.Enqueue(ctx, keyed, testMsg(999)); dup || err != nil {
		t.Errorf("after retention: dup=%v err=%v", dup, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "sent")); len(ents) != 0 {
		t.Errorf("Prune left %d sent records", len(ents))
	}
}

func TestOperations(t *testing.T) {
	e := newEnv(t, nil)
	addr := closedPort(t)
	a := e.enqueue(t, 1)
	b := e.enqueue(t, 2)
	c := e.enqueue(t, 3)
	e.deliverOnce(t, account(addr)) // all deferred

	items, err := e.ob.List()
	if err != nil || len(items) != 3 || items[0].ID != a || items[2].ID != c {
		t.Fatalf("List = %+v, %v", items, err)
	}
	if err := e.ob.Retry(a); err != nil {
		t.Fatal(err)
	}
	if it, _, _ := e.ob.Get(a); !it.NextAttempt.Equal(e.clock.Now()) {
		t.Errorf("Retry: next attempt %v, want now", it.NextAttempt)
	}
	if err := e.ob.Delete(b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ob.Get(b); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get deleted = %v", err)
	}
	for _, bad := range []string{"../lock", "nope", ""} {
		if err := e.ob.Delete(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want ErrNotFound", bad, err)
		}
	}
	if err := e.ob.RetryAll(); err != nil {
		t.Fatal(err)
	}
	// Refuse permanently: both become dead letters.
	srv := startServer(t, devserver.Hooks{Rcpt: func(string) *devserver.Reject {
		return &devserver.Reject{Code: 550, Message: "no"}
	}})
	if rep := e.deliverOnce(t, account(srv.Addr())); rep.Bounced != 2 {
		t.Fatalf("report %+v", rep)
	}
	dead, _ := e.ob.Dead()
	if len(dead) != 2 || dead[0].Refused[0].Reply.Code != 550 {
		t.Fatalf("Dead = %+v", dead)
	}
	if err := e.ob.Retry(a); !errors.Is(err, ErrNotFound) {
		t.Errorf("Retry of a dead letter = %v, want ErrNotFound", err)
	}
	if err := e.ob.Requeue(a); err != nil {
		t.Fatal(err)
	}
	it, _, _ := e.ob.Get(a)
	if it.State != StateQueued || it.Attempts != 0 || len(it.Refused) != 0 || !slices.Equal(it.To, []string{"ops@mailbot.test"}) {
		t.Errorf("requeued %+v", it)
	}
	good := startServer(t, devserver.Hooks{})
	if rep := e.deliverOnce(t, account(good.Addr())); rep.Sent != 1 {
		t.Fatalf("after requeue: %+v", rep)
	}
	if err := e.ob.Delete(c); err != nil {
		t.Errorf("Delete dead letter: %v", err)
	}
	st, err := e.ob.Stats()
	if err != nil || st.Queued != 0 || st.Dead != 0 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
}

func TestBusyMessage(t *testing.T) {
	e := newEnv(t, nil)
	id := e.enqueue(t, 1)
	// Hold the lock as a delivering process would.
	lf, err := lockFile(filepath.Join(e.dir, "queue", id))
	if err != nil {
		t.Fatal(err)
	}
	cli := e.open(t, nil)
	for name, op := range map[string]func(string) error{"Delete": cli.Delete, "Retry": cli.Retry} {
		if err := op(id); !errors.Is(err, ErrBusy) {
			t.Errorf("%s while delivering = %v, want ErrBusy", name, err)
		}
	}
	if items, err := cli.List(); err != nil || len(items) != 1 {
		t.Errorf("List while delivering = %d, %v", len(items), err)
	}
	lf.unlock()
	if err := cli.Delete(id); err != nil {
		t.Errorf("Delete after unlock: %v", err)
	}
}

// TestCrashRecovery abandons an Outbox in the middle of a delivery run,
// leaves the debris a crash can leave, and checks that a new Outbox
// delivers every message.
func TestCrashRecovery(t *testing.T) {
	e := newEnv(t, nil)
	const n = 30
	for i := range n {
		e.enqueue(t, i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got atomic.Int32
	srv := startServer(t, devserver.Hooks{Data: func(*devserver.Message) *devserver.Reject {
		if got.Add(1) == 10 {
			cancel() // the "crash" happens with this message in flight
		}
		return nil
	}})
	e.ob.DeliverOnce(ctx, account(srv.Addr()))
	// No Close: the first Outbox is simply abandoned.

	// A torn temp file (a write cut short), an old one, and a file renamed
	// into the queue whose contents never reached the disk.
	fresh := filepath.Join(e.dir, "tmp", "w-torn")
	old := filepath.Join(e.dir, "tmp", "w-old")
	for _, p := range []string{fresh, old} {
		os.WriteFile(p, []byte(`{"v":1,"id":"x`), 0o600)
	}
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	// An interrupted queued->dead move: the dead copy has the higher Seq.
	items, _ := e.ob.List()
	moved := items[0]
	_, data, _ := e.ob.Get(moved.ID)
	moved.Seq++
	moved.State = StateDead
	content, _ := encodeFile(&moved, data)
	os.WriteFile(filepath.Join(e.dir, "dead", moved.ID), content, 0o600)

	torn := filepath.Join(e.dir, "queue", "00000000000000-deadbeef")
	os.WriteFile(torn, []byte(`{"v":1,"id":"00000000000000-deadbeef","size":100,"crc32c":1}`+"\nshort"), 0o600)
	ob2 := e.open(t, nil)
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Errorf("torn queue file left in queue/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "corrupt", "00000000000000-deadbeef")); err != nil {
		t.Errorf("torn queue file not kept in corrupt/: %v", err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temp file not removed: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent temp file (maybe another process's) removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "queue", moved.ID)); !os.IsNotExist(err) {
		t.Errorf("interrupted move not settled: queue copy %v", err)
	}
	ob2.Requeue(moved.ID)
	e.clock.Advance(time.Hour) // past the backoff of an attempt cut short by the crash
	rep, err := ob2.DeliverOnce(context.Background(), account(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	// Every message arrived at least once.
	seen := map[string]bool{}
	for _, m := range srv.Messages() {
		seen[string(bytes.SplitN(m.Data, []byte("\r\n"), 2)[0])] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("Message-ID: <m%d@mailbot.test>", i)] {
			t.Errorf("message %d lost (report %+v)", i, rep)
		}
	}
	if st, _ := ob2.Stats(); st.Queued != 0 || st.Dead != 0 {
		left, _ := ob2.List()
		t.Errorf("after recovery: %+v %+v", st, left)
	}
}

// TestKill9DuringEnqueue kills a process that is enqueueing with SIGKILL
// and checks that every id it was given back survives.
func TestKill9DuringEnqueue(t *testing.T) {
	if dir := os.Getenv("OUTBOX_KILL9_DIR"); dir != "" {
		kill9Child(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9DuringEnqueue$")
	cmd.Env = append(os.Environ(), "OUTBOX_KILL9_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 200 {
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("child acknowledged only %d messages", len(acked))
	}
	ob, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	items, err := ob.List()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, it := range items {
		have[it.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("acknowledged message %s lost after kill -9", id)
		}
	}
}

func kill9Child(dir string) {
	ob, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id, _, err := ob.Enqueue(context.Background(), Envelope{Account: "default", To: []string{"a@x"}}, fmt.Appendf(nil, "Subject: %d-%d\r\n\r\nx\r\n", g, i))
				if err != nil {
					continue
				}
				mu.Lock()
				fmt.Println("acked", id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
