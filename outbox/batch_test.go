package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
)

func sub(n int, key string) Submission {
	return Submission{Envelope: Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"ops@mailbot.test"}, Key: key}, Data: testMsg(n)}
}

// dirNames lists a spool subdirectory.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	names, err := readNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestEnqueueBatch(t *testing.T) {
	tests := []struct {
		name    string
		before  []Submission // enqueued in an earlier batch
		subs    []Submission
		wantDup []int // 0-based indexes reported as duplicates
		// dupOf[i] = j: item i is a duplicate of item j of this batch
		// (j >= 0) or of before[-j-1] (j < 0).
		dupOf  map[int]int
		stored int // new files in queue/ from this batch
	}{
		{name: "distinct", subs: []Submission{sub(1, ""), sub(2, ""), sub(3, "k3")}, stored: 3},
		{name: "key repeated within the batch", subs: []Submission{sub(1, "k"), sub(2, ""), sub(3, "k"), sub(4, "k")},
			wantDup: []int{2, 3}, dupOf: map[int]int{2: 0, 3: 0}, stored: 2},
		{name: "Message-ID repeated within the batch", subs: []Submission{sub(1, ""), sub(1, "")},
			wantDup: []int{1}, dupOf: map[int]int{1: 0}, stored: 1},
		{name: "key of an earlier batch", before: []Submission{sub(9, "old")}, subs: []Submission{sub(1, ""), sub(2, "old")},
			wantDup: []int{1}, dupOf: map[int]int{1: -1}, stored: 1},
		{name: "empty", subs: nil, stored: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := context.Background()
			prev, err := e.ob.EnqueueBatch(ctx, tt.before)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.ob.EnqueueBatch(ctx, tt.subs)
			if err != nil {
				t.Fatalf("EnqueueBatch: %v", err)
			}
			if len(res) != len(tt.subs) {
				t.Fatalf("got %d results for %d messages", len(res), len(tt.subs))
			}
			for i, r := range res {
				isDup := false
				for _, d := range tt.wantDup {
					isDup = isDup || d == i
				}
				if r.Duplicate != isDup {
					t.Errorf("item %d: duplicate = %v, want %v", i, r.Duplicate, isDup)
				}
				if j, ok := tt.dupOf[i]; ok {
					want := ""
					if j >= 0 {
						want = res[j].ID
					} else {
						want = prev[-j-1].ID
					}
					if r.ID != want {
						t.Errorf("item %d: id %s, want the original's %s", i, r.ID, want)
					}
				}
				if !validID(r.ID) {
					t.Errorf("item %d: id %q", i, r.ID)
				}
			}
			queued := dirNames(t, filepath.Join(e.dir, dirQueue))
			if got, want := len(queued), tt.stored+len(tt.before); got != want {
				t.Errorf("%d files in queue/, want %d", got, want)
			}
			// Every stored message is whole (visible all or nothing) and
			// nothing is left in tmp/.
			for _, id := range queued {
				if _, err := e.ob.checkFile(e.ob.path(StateQueued, id)); err != nil {
					t.Errorf("queued %s: %v", id, err)
				}
			}
			if left := dirNames(t, filepath.Join(e.dir, dirTmp)); len(left) != 0 {
				t.Errorf("tmp/ holds %v", left)
			}
			// The batch is as durable and as visible as single enqueues:
			// a fresh Outbox on the spool (after a crash) lists the same.
			e.ob.Close()
			ob2 := e.open(t, nil)
			items, err := ob2.List()
			if err != nil || len(items) != len(queued) {
				t.Errorf("reopened: %d queued, %v; want %d", len(items), err, len(queued))
			}
		})
	}
}

// TestEnqueueBatchAllOrNothing: a message that cannot be stored fails the
// whole batch, naming it, and nothing of the batch is queued or keyed.
func TestEnqueueBatchAllOrNothing(t *testing.T) {
	t.Run("invalid envelope", func(t *testing.T) {
		e := newEnv(t, nil)
		bad := sub(2, "")
		bad.Envelope.To = []string{"a@b\r\nRCPT TO:<x@y>"}
		_, err := e.ob.EnqueueBatch(context.Background(), []Submission{sub(1, ""), bad, sub(3, "")})
		if !errors.Is(err, ErrInvalidEnvelope) || !strings.Contains(err.Error(), "message 2 of 3") {
			t.Fatalf("err = %v, want ErrInvalidEnvelope naming message 2 of 3", err)
		}
		assertEmptySpool(t, e.dir)
	})
	t.Run("write fails", func(t *testing.T) {
		e := newEnv(t, nil)
		// tmp/ replaced by a file: no temp file can be created.
		tmp := filepath.Join(e.dir, dirTmp)
		if err := os.Remove(tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tmp, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := e.ob.EnqueueBatch(context.Background(), []Submission{sub(1, "a"), sub(2, "b")})
		if err == nil || !strings.Contains(err.Error(), "nothing of the batch was queued") {
			t.Fatalf("err = %v", err)
		}
		assertEmptySpool(t, e.dir)
		// A later batch is not told it duplicates the failed one.
		os.Remove(tmp)
		os.Mkdir(tmp, 0o700)
		res, err := e.ob.EnqueueBatch(context.Background(), []Submission{sub(1, "a")})
		if err != nil || res[0].Duplicate {
			t.Fatalf("retry: %+v, %v", res, err)
		}
	})
}

func assertEmptySpool(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{dirQueue, dirKeys} {
		if n := dirNames(t, filepath.Join(dir, d)); len(n) != 0 {
			t.Errorf("%s/ holds %v after a failed batch", d, n)
		}
	}
}

// TestKeyRecords: keys/ entries are hard links to the queued file; they
// keep working once the message is delivered, records in the older JSON
// form still count, a stale record is replaced, and Prune removes only
// expired ones.
func TestKeyRecords(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.KeyRetention = time.Hour })
	ctx := context.Background()
	srv := startServer(t, devserver.Hooks{})
	id := e.enqueue(t, 1)
	kp := filepath.Join(e.dir, dirKeys, keyName("<m1@mailbot.test>"))
	ki, err := os.Stat(kp)
	if err != nil {
		t.Fatal(err)
	}
	qi, err := os.Stat(e.ob.path(StateQueued, id))
	if err != nil || !os.SameFile(ki, qi) {
		t.Fatalf("keys/ entry is not a link to the queued file (%v)", err)
	}
	if rep := e.deliverOnce(t, account(srv.Addr())); rep.Sent != 1 {
		t.Fatalf("report %+v", rep)
	}
	if got, dup, err := e.ob.Enqueue(ctx, sub(1, "").Envelope, testMsg(1)); err != nil || !dup || got != id {
		t.Fatalf("after delivery: %s, %v, %v; want duplicate of %s", got, dup, err, id)
	}

	// An older spool's JSON record, naming a queued message.
	id2 := e.enqueue(t, 2)
	rec, _ := json.Marshal(keyRecord{Key: "legacy", ID: id2, Created: e.clock.Now()})
	legacy := filepath.Join(e.dir, dirKeys, keyName("legacy"))
	if err := os.WriteFile(legacy, append(rec, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, dup, err := e.ob.Enqueue(ctx, sub(3, "legacy").Envelope, testMsg(3)); err != nil || !dup || got != id2 {
		t.Fatalf("legacy record: %s, %v, %v; want duplicate of %s", got, dup, err, id2)
	}

	// A stale record (its message deleted) is replaced by a new link.
	if err := e.ob.Delete(id2); err != nil {
		t.Fatal(err)
	}
	id3, dup, err := e.ob.Enqueue(ctx, sub(3, "legacy").Envelope, testMsg(3))
	if err != nil || dup {
		t.Fatalf("after delete: %s, %v, %v", id3, dup, err)
	}
	if kr, err := readKeyRecord(legacy); err != nil || kr.ID != id3 || kr.Key != "legacy" {
		t.Fatalf("replaced record: %+v, %v", kr, err)
	}

	// Prune keeps fresh records and removes expired ones, without
	// calling a linked message file unreadable.
	if err := e.ob.Prune(); err != nil {
		t.Fatal(err)
	}
	if n := len(dirNames(t, filepath.Join(e.dir, dirKeys))); n != 3 {
		t.Errorf("%d key records after a prune within retention, want 3", n)
	}
	e.clock.Advance(2 * time.Hour)
	if err := e.ob.Prune(); err != nil {
		t.Fatal(err)
	}
	if n := dirNames(t, filepath.Join(e.dir, dirKeys)); len(n) != 0 {
		t.Errorf("key records after expiry: %v", n)
	}
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	for _, r := range e.logs.recs {
		if strings.Contains(r.Message, "unreadable idempotency key") {
			t.Errorf("prune logged %q", r.Message)
		}
	}
}
