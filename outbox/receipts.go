package outbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Receipts record each delivery: when, the relay's reply to the message
// (its queue id: "250 2.0.0 Ok: queued as 4Zx..."), the attempts it took
// and the account that delivered it. They are JSON lines appended to
// receipts/<UTC day of the delivery>.jsonl, one write per delivered batch,
// so recording a reply costs no file per message: the sent/ file is the
// queued one moved there as is (the move is the durable "sent" mark), and
// Get merges its receipt into it. Receipts are flushed with the moves into
// sent/ (flushSent); a power failure may lose the last ones, never a
// message. Files older than KeyRetention plus a day are pruned.
const dirReceipts = "receipts"

// receipt is one line of a receipts file.
type receipt struct {
	ID       string    `json:"id"`
	At       time.Time `json:"at"`
	Reply    string    `json:"reply,omitempty"`
	Attempts int       `json:"attempts"`
	Via      string    `json:"via,omitempty"`
}

const receiptDay = "2006-01-02"

// writeReceipts appends rs to the receipts file of their day.
func (o *Outbox) writeReceipts(rs []receipt) {
	if len(rs) == 0 {
		return
	}
	byDay := map[string][]byte{}
	for _, r := range rs {
		line, err := json.Marshal(r)
		if err != nil {
			continue
		}
		day := r.At.UTC().Format(receiptDay)
		byDay[day] = append(append(byDay[day], line...), '\n')
	}
	o.receiptMu.Lock()
	defer o.receiptMu.Unlock()
	for day, b := range byDay {
		if err := o.appendReceipts(day, b); err != nil {
			o.log.Warn("outbox: record delivery receipts (relay replies)", "error", err)
		}
	}
}

// appendReceipts writes b to day's file, kept open while it is today's.
// receiptMu is held.
func (o *Outbox) appendReceipts(day string, b []byte) error {
	if o.receiptFile == nil || o.receiptDay != day {
		if o.receiptFile != nil {
			o.receiptFile.Close()
			o.receiptFile = nil
		}
		dir := filepath.Join(o.dir, dirReceipts)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, day+".jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		o.receiptFile, o.receiptDay = f, day
	}
	if _, err := o.receiptFile.Write(b); err != nil {
		return fmt.Errorf("append to %s: %w", o.receiptFile.Name(), err)
	}
	o.receiptDirty = true
	return nil
}

// syncReceipts flushes the open receipts file (flushSent, Close).
func (o *Outbox) syncReceipts(closing bool) error {
	o.receiptMu.Lock()
	defer o.receiptMu.Unlock()
	if o.receiptFile == nil {
		return nil
	}
	var err error
	if o.receiptDirty {
		err = o.receiptFile.Sync()
		o.receiptDirty = false
	}
	if closing {
		if cerr := o.receiptFile.Close(); err == nil {
			err = cerr
		}
		o.receiptFile = nil
	}
	return err
}

// applyReceipt merges the latest receipt of a delivered message into it.
func (o *Outbox) applyReceipt(it *Item) {
	dir := filepath.Join(o.dir, dirReceipts)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	// Newest day first, from the day the message was created on.
	created := it.Created.UTC().Format(receiptDay)
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".jsonl"); ok && n >= created {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	needle := []byte(`"id":"` + it.ID + `"`)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			continue
		}
		var found *receipt
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), needle) {
				continue
			}
			var r receipt
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.ID == it.ID {
				found = &r // the last one wins
			}
		}
		if found != nil {
			it.SentAt, it.Attempts = found.At, found.Attempts
			if found.Reply != "" {
				it.Reply = found.Reply
			}
			if found.Via != "" {
				it.Via = found.Via
			}
			return
		}
	}
}

// pruneReceipts removes receipts files older than KeyRetention plus a
// day: their messages' sent/ files are gone by then.
func (o *Outbox) pruneReceipts(now time.Time) error {
	dir := filepath.Join(o.dir, dirReceipts)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("outbox: prune receipts: %w", err)
	}
	cutoff := now.Add(-o.opts.KeyRetention - 24*time.Hour).UTC().Format(receiptDay)
	var errs []error
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".jsonl")
		if !ok || n >= cutoff {
			continue
		}
		o.receiptMu.Lock()
		if o.receiptDay == n && o.receiptFile != nil {
			o.receiptFile.Close()
			o.receiptFile = nil
		}
		o.receiptMu.Unlock()
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
