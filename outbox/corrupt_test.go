package outbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
)

// damageKinds are the ways a spool file is damaged in the tests: each
// returns the damaged bytes of a whole file.
var damageKinds = []struct {
	name  string
	check string // the check that must fail
	// recoverable: RequeueCorrupt can put it back with its own account.
	recoverable bool
	missing     int // message bytes missing at the end
	envelope    string
	damage      func(whole []byte) []byte
}{
	{"bytes cut from the end", "size", true, 5, EnvelopeMetadata, func(b []byte) []byte { return b[:len(b)-5] }},
	{"truncated to the JSON line", "size", false, len(recoverMsg), EnvelopeMetadata, func(b []byte) []byte {
		return b[:bytes.IndexByte(b, '\n')+1]
	}},
	{"truncated mid JSON", "metadata line", false, 0, EnvelopePartial, func(b []byte) []byte {
		// Cut inside the metadata, after the recipients.
		i := bytes.Index(b, []byte(`"key"`))
		return b[:i+3]
	}},
	{"random bytes", "metadata line", false, 0, "", func(b []byte) []byte {
		r := rand.New(rand.NewPCG(1, 2))
		out := make([]byte, len(b))
		for i := range out {
			out[i] = byte(r.UintN(256))
			if out[i] == '\n' {
				out[i] = 'x'
			}
		}
		return out
	}},
	{"flipped byte in the body", "checksum", true, 0, EnvelopeMetadata, func(b []byte) []byte {
		out := bytes.Clone(b)
		out[len(out)-4] ^= 0x20
		return out
	}},
}

// recoverMsg is a message with recipients in its headers, so what the
// headers tell can be compared with the envelope.
var recoverMsg = []byte("Message-ID: <rec@mailbot.test>\r\nFrom: Bot <bot@mailbot.test>\r\nTo: ops@mailbot.test\r\nCc: Audit <audit@mailbot.test>\r\nSubject: nightly report\r\n\r\nline one\r\nline two\r\nline three\r\n")

// enqueueRecover enqueues recoverMsg and returns its id.
func (e *env) enqueueRecover(t *testing.T) string {
	t.Helper()
	id, _, err := e.ob.Enqueue(context.Background(), Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"ops@mailbot.test"}}, recoverMsg)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// hashTree returns a digest of every name, mode, modification time and
// content under dir.
func hashTree(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// errorRecords returns the messages of records logged at error level.
func (h *logCapture) errorRecords() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if r.Level >= slog.LevelError {
			out = append(out, r.Message)
		}
	}
	return out
}

// damage replaces the spool file of id in queue/ with damaged bytes (in
// place: same inode, as a disk fault would).
func damageFile(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedFilesAreKept damages a queued file in each way and checks
// that read-only looks report it without changing a byte of the spool,
// and that opening the spool for delivery moves it to corrupt/ with a
// note and an error record, never deleting it.
func TestDamagedFilesAreKept(t *testing.T) {
	for _, tc := range damageKinds {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			good := e.enqueue(t, 1)
			id := e.enqueueRecover(t)
			e.ob.Close()
			qpath := filepath.Join(e.dir, "queue", id)
			damageFile(t, qpath, tc.damage)
			damaged, _ := os.ReadFile(qpath)

			// Read-only: everything is reported, nothing changes.
			before := hashTree(t, e.dir)
			ro := e.open(t, func(o *Options) { o.SkipRecovery = true })
			items, err := ro.List()
			if err != nil || len(items) != 1 || items[0].ID != good {
				t.Errorf("List = %+v, %v; want only the intact %s", items, err, good)
			}
			if _, err := ro.Dead(); err != nil {
				t.Error(err)
			}
			cs, err := ro.Corrupt()
			if err != nil || len(cs) != 1 || cs[0].Name != id || cs[0].Moved || cs[0].Origin != "queue" || cs[0].Check != tc.check {
				t.Fatalf("Corrupt (read-only) = %+v, %v", cs, err)
			}
			if _, _, err := ro.Get(id); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Get(damaged) = %v, want ErrCorrupt", err)
			}
			if _, _, err := ro.Inspect(id); err != nil {
				t.Errorf("Inspect: %v", err)
			}
			if _, err := ro.Stats(); err != nil {
				t.Error(err)
			}
			ro.Close()
			if after := hashTree(t, e.dir); after != before {
				t.Fatal("read-only looks changed the spool")
			}

			// Opening for delivery quarantines it.
			logs := &logCapture{}
			ob := e.open(t, func(o *Options) { o.Logger = slog.New(logs) })
			if _, err := os.Stat(qpath); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("damaged file still in queue/: %v", err)
			}
			kept, err := os.ReadFile(filepath.Join(e.dir, "corrupt", id))
			if err != nil || !bytes.Equal(kept, damaged) {
				t.Fatalf("corrupt/%s: %v (byte for byte: %v)", id, err, bytes.Equal(kept, damaged))
			}
			note, err := os.ReadFile(filepath.Join(e.dir, "corrupt", id+".note"))
			if err != nil || !strings.Contains(string(note), "check:       "+tc.check+"\n") ||
				!strings.Contains(string(note), "was:         queue/"+id+"\n") || !strings.Contains(string(note), "what to do:") {
				t.Errorf("note: %v\n%s", err, note)
			}
			if errs := logs.errorRecords(); len(errs) != 1 || !strings.Contains(errs[0], "corrupt/") {
				t.Errorf("error records = %q", errs)
			}
			cs, err = ob.Corrupt()
			if err != nil || len(cs) != 1 {
				t.Fatalf("Corrupt = %+v, %v", cs, err)
			}
			c := cs[0]
			if !c.Moved || c.Origin != "queue" || c.Check != tc.check || c.Recoverable != tc.recoverable ||
				c.Missing != tc.missing || c.Envelope != tc.envelope || c.MovedAt.IsZero() {
				t.Errorf("Corrupt = %+v", c)
			}
			if tc.envelope != "" && (c.Item.Account != "default" || !slices.Equal(c.Item.To, []string{"ops@mailbot.test"})) {
				t.Errorf("recovered envelope %+v", c.Item)
			}
			if st, _ := ob.Stats(); st.Queued != 1 || st.Corrupt != 1 {
				t.Errorf("Stats = %+v", st)
			}
			if !tc.recoverable {
				if err := ob.Requeue(id); !errors.Is(err, ErrUnrecoverable) {
					t.Errorf("Requeue(unrecoverable) = %v", err)
				}
				if _, err := os.Stat(filepath.Join(e.dir, "corrupt", id)); err != nil {
					t.Errorf("refused requeue lost the file: %v", err)
				}
			}
		})
	}
}

// TestRequeueRecoveredDelivers requeues what survived of damaged
// messages and delivers it to a real SMTP server.
func TestRequeueRecoveredDelivers(t *testing.T) {
	srv := startServer(t, devserver.Hooks{})
	e := newEnv(t, nil)
	cut := e.enqueueRecover(t)
	flipped, _, err := e.ob.Enqueue(context.Background(), Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"b@mailbot.test"}, Key: "flip"}, testMsg(2))
	if err != nil {
		t.Fatal(err)
	}
	noMeta, _, err := e.ob.Enqueue(context.Background(), Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"x@mailbot.test"}}, bytes.ReplaceAll(recoverMsg, []byte("rec@"), []byte("rec2@")))
	if err != nil {
		t.Fatal(err)
	}
	e.ob.Close()
	damageFile(t, filepath.Join(e.dir, "queue", cut), damageKinds[0].damage)
	damageFile(t, filepath.Join(e.dir, "queue", flipped), damageKinds[4].damage)
	// The metadata line garbled, the message intact.
	damageFile(t, filepath.Join(e.dir, "queue", noMeta), func(b []byte) []byte {
		out := bytes.Clone(b)
		copy(out, "\x00garbage")
		return out
	})
	logs := &logCapture{}
	ob := e.open(t, func(o *Options) { o.Logger = slog.New(logs) })

	c, _, err := ob.Inspect(noMeta)
	if err != nil || c.Envelope != EnvelopeHeaders || !c.NeedsAccount ||
		!slices.Equal(c.Item.To, []string{"ops@mailbot.test", "audit@mailbot.test"}) || c.Item.From != "bot@mailbot.test" {
		t.Fatalf("Inspect(no metadata) = %+v, %v", c, err)
	}
	if err := ob.Requeue(noMeta); !errors.Is(err, ErrUnrecoverable) {
		t.Errorf("Requeue without an account = %v, want ErrUnrecoverable", err)
	}
	for _, tc := range []struct{ id, account string }{{cut, ""}, {flipped, ""}, {noMeta, "default"}} {
		if _, err := ob.RequeueCorrupt(tc.id, tc.account); err != nil {
			t.Fatalf("RequeueCorrupt(%s): %v", tc.id, err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "corrupt", tc.id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("corrupt/%s left after requeue: %v", tc.id, err)
		}
	}
	it, data, err := ob.Get(cut)
	if err != nil || it.State != StateQueued || it.Key != "<rec@mailbot.test>" || it.Recovered == "" || !bytes.Equal(data, recoverMsg[:len(recoverMsg)-5]) {
		t.Fatalf("requeued %+v %q %v", it, data, err)
	}
	if it, _, _ := ob.Get(flipped); it.Key != "flip" {
		t.Errorf("idempotency key not kept: %+v", it)
	}
	if rep := e.deliverWith(t, ob, account(srv.Addr())); rep.Sent != 3 {
		t.Fatalf("deliver: %+v", rep)
	}
	got := map[string][]string{}
	for _, m := range srv.Messages() {
		got[string(bytes.SplitN(m.Data, []byte("\r\n"), 2)[0])] = m.To
	}
	if !slices.Equal(got["Message-ID: <rec@mailbot.test>"], []string{"ops@mailbot.test"}) ||
		!slices.Equal(got["Message-ID: <m2@mailbot.test>"], []string{"b@mailbot.test"}) ||
		!slices.Equal(got["Message-ID: <rec2@mailbot.test>"], []string{"ops@mailbot.test", "audit@mailbot.test"}) {
		t.Errorf("delivered: %v", got)
	}
	var warned bool
	for _, r := range logs.recs {
		warned = warned || strings.Contains(r.Message, "recovered and requeued")
	}
	if !warned {
		t.Error("recovery not logged")
	}
}

func (e *env) deliverWith(t *testing.T, ob *Outbox, accts map[string]Account) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := ob.DeliverOnce(ctx, accts)
	if err != nil {
		t.Fatalf("DeliverOnce: %v", err)
	}
	return rep
}

// TestDamageMetDuringDelivery: a file damaged after the daemon indexed it
// is moved to corrupt/ by the delivery attempt, not sent and not deleted.
func TestDamageMetDuringDelivery(t *testing.T) {
	srv := startServer(t, devserver.Hooks{})
	e := newEnv(t, nil)
	id := e.enqueueRecover(t)
	damageFile(t, filepath.Join(e.dir, "queue", id), damageKinds[0].damage)
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{}) || len(srv.Messages()) != 0 {
		t.Fatalf("delivered a damaged message: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "corrupt", id)); err != nil {
		t.Fatalf("not in corrupt/: %v", err)
	}
	if errs := e.logs.errorRecords(); len(errs) != 1 {
		t.Errorf("error records = %q", errs)
	}
}

// TestDamagedSentRecordKept: prune does not delete a sent/ record whose
// metadata it cannot read; it goes to corrupt/, not offered for requeue
// (it was delivered).
func TestDamagedSentRecordKept(t *testing.T) {
	srv := startServer(t, devserver.Hooks{})
	e := newEnv(t, nil)
	id := e.enqueue(t, 1)
	e.deliverOnce(t, account(srv.Addr()))
	p := filepath.Join(e.dir, "sent", id)
	damageFile(t, p, func(b []byte) []byte { return b[:10] })
	if err := e.ob.Prune(); err != nil {
		t.Fatal(err)
	}
	c, _, err := e.ob.Inspect(id)
	if err != nil || c.Origin != "sent" || c.Recoverable || c.NeedsAccount {
		t.Fatalf("Inspect = %+v, %v", c, err)
	}
	if err := e.ob.Requeue(id); !errors.Is(err, ErrUnrecoverable) {
		t.Errorf("Requeue(delivered) = %v", err)
	}
}

// TestDamagedDeadLetter: a damaged dead letter is left out of Dead,
// reported by Corrupt, and Requeue on it (an explicit command, here from
// a SkipRecovery Outbox like the CLI's) moves it to corrupt/ and puts the
// recovered message back in the queue, refusals cleared.
func TestDamagedDeadLetter(t *testing.T) {
	srv := startServer(t, devserver.Hooks{Rcpt: func(string) *devserver.Reject {
		return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
	}})
	e := newEnv(t, nil)
	id := e.enqueueRecover(t)
	if rep := e.deliverOnce(t, account(srv.Addr())); rep.Bounced != 1 {
		t.Fatalf("deliver: %+v", rep)
	}
	e.ob.Close()
	damageFile(t, filepath.Join(e.dir, "dead", id), damageKinds[0].damage)
	ro := e.open(t, func(o *Options) { o.SkipRecovery = true })
	if d, err := ro.Dead(); err != nil || len(d) != 0 {
		t.Errorf("Dead = %+v, %v", d, err)
	}
	cs, err := ro.Corrupt()
	if err != nil || len(cs) != 1 || cs[0].Origin != "dead" || cs[0].Moved || !cs[0].Recoverable {
		t.Fatalf("Corrupt = %+v, %v", cs, err)
	}
	if err := ro.Requeue(id); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	it, data, err := ro.Get(id)
	if err != nil || it.State != StateQueued || len(it.Refused) != 0 || !slices.Equal(it.To, []string{"ops@mailbot.test"}) ||
		!bytes.Equal(data, recoverMsg[:len(recoverMsg)-5]) {
		t.Fatalf("requeued %+v %q %v", it, data, err)
	}
	for _, d := range []string{"dead", "corrupt"} {
		if _, err := os.Stat(filepath.Join(e.dir, d, id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s/%s left: %v", d, id, err)
		}
	}
}

// TestRequeueCorruptAfterResend: once the script has sent the message
// again under the same key, the damaged copy is not offered for requeue.
func TestRequeueCorruptAfterResend(t *testing.T) {
	e := newEnv(t, nil)
	id := e.enqueueRecover(t)
	e.ob.Close()
	damageFile(t, filepath.Join(e.dir, "queue", id), damageKinds[0].damage)
	ob := e.open(t, nil) // moves it to corrupt/
	again, dup, err := ob.Enqueue(context.Background(), Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"ops@mailbot.test"}}, recoverMsg)
	if err != nil || dup || again == id {
		t.Fatalf("re-enqueue = %s %v %v: a damaged copy must not swallow a fresh one", again, dup, err)
	}
	if c, _, err := ob.Inspect(id); err != nil || c.Recoverable || !strings.Contains(c.Reason, again) {
		t.Errorf("Inspect = %+v, %v", c, err)
	}
	if _, err := ob.RequeueCorrupt(id, ""); !errors.Is(err, ErrUnrecoverable) {
		t.Errorf("RequeueCorrupt = %v, want ErrUnrecoverable", err)
	}
}
