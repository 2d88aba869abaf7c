package outbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Damaged spool files.
//
// A file in queue/, dead/ or sent/ that fails its check (no readable
// metadata line, unknown format version, message bytes that do not match
// the recorded size and CRC-32C, metadata naming another message) was
// accepted once and may be the only copy of a message, so it is never
// deleted. The process that opens the spool for delivery (Open without
// SkipRecovery: `mailbot run` and `mailbot exec`) and every delivery
// attempt that meets one moves it, byte for byte, to corrupt/<id> and
// writes corrupt/<id>.note beside it (which check failed, expected and
// found, when, where it was, what to do), logging at error level.
// Read-only looks (List, Dead, Get, Corrupt, Inspect) report damaged files
// wherever they are and move nothing. RequeueCorrupt puts a message whose
// envelope and header section survived back in the queue.

// ErrUnrecoverable is returned by RequeueCorrupt for a damaged message that
// cannot be sent as it is (no headers, no recipients, already delivered,
// another copy present); the error says why.
var ErrUnrecoverable = errors.New("outbox: damaged message cannot be requeued")

// Envelope sources of a damaged message (Corrupt.Envelope).
const (
	// EnvelopeMetadata: the JSON metadata line is intact.
	EnvelopeMetadata = "metadata"
	// EnvelopePartial: part of the metadata line was readable; what it
	// lacked was taken from the message's From, To, Cc and Bcc headers.
	EnvelopePartial = "partial metadata"
	// EnvelopeHeaders: no metadata survived; sender and recipients come
	// from the message's From, To, Cc and Bcc headers.
	EnvelopeHeaders = "headers"
)

// Corrupt describes a damaged spool file and what could be recovered
// from it.
type Corrupt struct {
	// Name is the file's name (the message id, with a -N suffix if
	// corrupt/ already held one of that name); queue show, requeue and
	// delete take it.
	Name string
	// Path is where the file is now.
	Path string
	// Moved is true for a file in corrupt/. A damaged file still in
	// queue/ or dead/ (seen by a read-only look before any delivering
	// process met it) has Moved false.
	Moved bool
	// Origin is the directory the file was found in: "queue", "dead",
	// "sent", or "" when unknown (no note).
	Origin string
	// MovedAt is when it was moved to corrupt/ (zero if not moved or
	// unknown).
	MovedAt time.Time
	// FileSize is the size of the damaged file in bytes.
	FileSize int64
	// Check names the check that failed ("metadata line", "format
	// version", "size", "checksum", "placement"); Expected and Found say
	// what it wanted and what the file holds.
	Check, Expected, Found string
	// Item is the metadata, as far as it was recovered (see Envelope).
	Item Item
	// Envelope says where Item's envelope comes from: EnvelopeMetadata,
	// EnvelopePartial, EnvelopeHeaders, or "" (nothing recovered).
	Envelope string
	// MessageBytes is how many message bytes the file holds; Missing is
	// how many are missing at the end by the size the metadata recorded
	// (0 if none or unknown).
	MessageBytes, Missing int
	// Headers is true when the message's header section is complete.
	Headers bool
	// Duplicate names the directory ("queue", "dead", "sent") holding an
	// intact file of the same message, or "".
	Duplicate string
	// Recoverable says whether RequeueCorrupt can put the message back;
	// NeedsAccount that it can only with an account name given, because
	// the account did not survive. Reason explains a "no".
	Recoverable, NeedsAccount bool
	Reason                    string
}

// Problem is the failed check in one line.
func (c Corrupt) Problem() string {
	return fmt.Sprintf("%s: expected %s, found %s", c.Check, c.Expected, c.Found)
}

// diagnose checks the bytes b of spool file name found in state s, and for
// a damaged file says what failed and what survived. damaged is false for
// a file that passes every check. data is the recovered message bytes.
func diagnose(b []byte, name string, s State) (c Corrupt, data []byte, damaged bool) {
	c.Name, c.FileSize = name, int64(len(b))
	meta, rest, hasNL := bytes.Cut(b, []byte("\n"))
	var it Item
	metaOK := false
	switch {
	case !hasNL:
		c.Check, c.Expected = "metadata line", "a JSON metadata line ended by a newline"
		c.Found = fmt.Sprintf("%d bytes without a newline", len(b))
		rest = nil
	default:
		if err := json.Unmarshal(meta, &it); err != nil {
			c.Check, c.Expected, c.Found = "metadata line", "valid JSON", err.Error()
		} else {
			metaOK = true
		}
	}
	data = rest
	if metaOK {
		c.Envelope = EnvelopeMetadata
		c.Item = it
		c.MessageBytes = len(data)
		if it.Size > len(data) {
			c.Missing = it.Size - len(data)
		}
		crc := crc32.Checksum(data, crcTable)
		switch {
		case it.Version != formatVersion:
			c.Check, c.Expected, c.Found = "format version", strconv.Itoa(formatVersion), strconv.Itoa(it.Version)
		case len(data) != it.Size:
			c.Check = "size"
			c.Expected = fmt.Sprintf("%d message bytes", it.Size)
			if c.Missing > 0 {
				c.Found = fmt.Sprintf("%d message bytes (%d missing at the end)", len(data), c.Missing)
			} else {
				c.Found = fmt.Sprintf("%d message bytes (%d more)", len(data), len(data)-it.Size)
			}
		case crc != it.CRC:
			c.Check = "checksum"
			c.Expected = fmt.Sprintf("CRC-32C %08x", it.CRC)
			c.Found = fmt.Sprintf("%08x (same size: some bytes changed)", crc)
		case it.ID != name || it.State != s && s != StateSent:
			// (sent/ files keep the queued metadata they were delivered
			// with: the move into sent/ is a rename.)
			c.Check = "placement"
			c.Expected = fmt.Sprintf("id %s in state %s", name, s)
			c.Found = fmt.Sprintf("id %s in state %s", noteValue(it.ID), noteValue(string(it.State)))
		default:
			return c, data, false
		}
	} else {
		c.Item, _ = salvageMeta(meta)
		c.MessageBytes = len(data)
		if c.Item.Account != "" || c.Item.From != "" || len(c.Item.To) > 0 {
			c.Envelope = EnvelopePartial
		}
	}
	c.Headers = headersComplete(data)
	if c.Headers && c.Envelope != EnvelopeMetadata {
		h, _ := mail.ReadMessage(bytes.NewReader(data))
		if c.Item.From == "" {
			if a, err := mail.ParseAddress(h.Header.Get("From")); err == nil {
				c.Item.From = a.Address
			}
		}
		if len(c.Item.To) == 0 {
			c.Item.To = headerRecipients(h.Header)
		}
		if c.Envelope == "" && (c.Item.From != "" || len(c.Item.To) > 0) {
			c.Envelope = EnvelopeHeaders
		}
		if c.Item.Key == "" {
			c.Item.Key = strings.TrimSpace(h.Header.Get("Message-Id"))
		}
	}
	c.Recoverable, c.Reason = true, ""
	switch {
	case s == StateSent || c.Item.State == StateSent:
		c.Recoverable, c.Reason = false, "it was delivered already (a sent/ record): requeueing would send it again"
	case len(data) == 0:
		c.Recoverable, c.Reason = false, "no message bytes survived"
	case !c.Headers:
		c.Recoverable, c.Reason = false, "the message's header section is incomplete or unreadable"
	case len(c.Item.To) == 0:
		c.Recoverable, c.Reason = false, "its recipients are unknown"
	case c.Item.Account == "":
		c.NeedsAccount = true
		c.Reason = "its account is unknown: give it with --account NAME"
	}
	return c, data, true
}

// headersComplete reports whether data starts with a parseable header
// section ended by an empty line.
func headersComplete(data []byte) bool {
	if !bytes.Contains(data, []byte("\r\n\r\n")) && !bytes.Contains(data, []byte("\n\n")) {
		return false
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	return err == nil && len(m.Header) > 0
}

// headerRecipients returns the addresses in To, Cc and Bcc.
func headerRecipients(h mail.Header) []string {
	var to []string
	for _, k := range []string{"To", "Cc", "Bcc"} {
		list, err := h.AddressList(k)
		if err != nil {
			continue
		}
		for _, a := range list {
			if !slices.Contains(to, a.Address) {
				to = append(to, a.Address)
			}
		}
	}
	return to
}

// salvageMeta reads the top-level fields of a damaged metadata line up to
// the first that cannot be read, so a line cut short still gives its
// account, sender and recipients (they come first).
func salvageMeta(meta []byte) (Item, bool) {
	var it Item
	dec := json.NewDecoder(bytes.NewReader(meta))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return it, false
	}
	got := false
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			break
		}
		key, ok := kt.(string)
		if !ok {
			break
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		one, err := json.Marshal(map[string]json.RawMessage{key: raw})
		if err == nil && json.Unmarshal(one, &it) == nil {
			got = true
		}
	}
	return it, got
}

// noteValue returns s as it can go on one line of a note or a terminal:
// as is when it is printable UTF-8, quoted otherwise.
func noteValue(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 }) {
		return strconv.Quote(s)
	}
	return s
}

// corruptPath returns the path of name in corrupt/.
func (o *Outbox) corruptPath(name string) string { return filepath.Join(o.dir, dirCorrupt, name) }

// quarantine moves the damaged spool file path (of message id, found in
// state s, with bytes b; the caller holds its lock or it is not in use)
// to corrupt/ and writes its note. It deletes nothing. It returns the new
// path.
func (o *Outbox) quarantine(path, id string, s State, b []byte) (string, error) {
	c, _, damaged := diagnose(b, id, s)
	if !damaged {
		return "", fmt.Errorf("outbox: %s is not damaged", path)
	}
	if err := os.MkdirAll(filepath.Join(o.dir, dirCorrupt), 0o700); err != nil {
		return "", fmt.Errorf("outbox: create corrupt/: %w", err)
	}
	name := id
	for n := 2; ; n++ {
		if _, err := os.Lstat(o.corruptPath(name)); errors.Is(err, fs.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s-%d", id, n)
	}
	to := o.corruptPath(name)
	if err := renameFile(path, to); err != nil {
		o.log.Error("outbox: damaged spool file left in place: cannot move it to corrupt/", "path", path, "check", c.Check, "error", err)
		return "", fmt.Errorf("outbox: quarantine %s: %w", path, err)
	}
	c.Name, c.Origin, c.MovedAt = name, stateDir(s), o.opts.Now()
	noteErr := o.replaceFile(to+".note", []byte(c.note(stateDir(s)+"/"+id)), true)
	err := errors.Join(noteErr, syncDir(filepath.Dir(path)), syncDir(filepath.Dir(to)))
	o.log.Error("outbox: damaged spool file moved to corrupt/ (kept, not delivered)",
		"id", id, "from", path, "to", to,
		"check", c.Check, "expected", c.Expected, "found", c.Found,
		"recoverable", c.Recoverable || c.NeedsAccount,
		"inspect", "mailbot queue show "+name)
	if err != nil {
		o.log.Warn("outbox: write note of damaged file", "path", to, "error", err)
	}
	o.ctr.corrupt.Add(1)
	return to, nil
}

// quarantineFile locks the file of id in state s and, if it is damaged,
// moves it to corrupt/. It is for files found damaged without their lock;
// a busy file is left to its holder, which meets the damage itself.
func (o *Outbox) quarantineFile(s State, id string) {
	lf, err := lockFile(o.path(s, id))
	if err != nil {
		return
	}
	defer lf.unlock()
	_, _, b, err := lf.readRaw()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		o.log.Warn("outbox: unreadable spool file", "path", lf.path, "error", err)
		return
	}
	if _, _, damaged := diagnose(b, id, s); damaged {
		if _, err := o.quarantine(lf.path, id, s, b); err == nil && s == StateQueued {
			o.idx.remove(id)
		}
	}
}

func stateDir(s State) string {
	switch s {
	case StateDead:
		return dirDead
	case StateSent:
		return dirSent
	default:
		return dirQueue
	}
}

func dirState(d string) (State, bool) {
	switch d {
	case dirQueue:
		return StateQueued, true
	case dirDead:
		return StateDead, true
	case dirSent:
		return StateSent, true
	}
	return "", false
}

// note is the text of corrupt/<name>.note: what failed, what survived
// and what to do, one "key: value" per line (values quoted when they are
// not printable).
func (c Corrupt) note(was string) string {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-12s %s\n", k+":", noteValue(v)) }
	b.WriteString("mailbot outbox: damaged spool file, kept here instead of deleted\n")
	line("id", c.Name)
	line("was", was)
	line("moved", c.MovedAt.UTC().Format(time.RFC3339))
	line("check", c.Check)
	line("expected", c.Expected)
	line("found", c.Found)
	line("envelope", c.envelopeText())
	line("headers", map[bool]string{true: "complete", false: "incomplete or unreadable"}[c.Headers])
	switch {
	case c.Recoverable && !c.NeedsAccount:
		line("recoverable", "yes")
		line("what to do", fmt.Sprintf("inspect with `mailbot queue show %s`, then put it back with `mailbot queue requeue %s` or remove it with `mailbot queue delete %s`", c.Name, c.Name, c.Name))
	case c.NeedsAccount:
		line("recoverable", "with --account: "+c.Reason)
		line("what to do", fmt.Sprintf("inspect with `mailbot queue show %s`, then `mailbot queue requeue %s --account NAME`, or `mailbot queue delete %s`", c.Name, c.Name, c.Name))
	default:
		line("recoverable", "no: "+c.Reason)
		line("what to do", fmt.Sprintf("inspect with `mailbot queue show %s` or this file; send what you need again, then `mailbot queue delete %s`", c.Name, c.Name))
	}
	return b.String()
}

func (c Corrupt) envelopeText() string {
	if c.Envelope == "" {
		return "not recovered"
	}
	return fmt.Sprintf("from %s: account %s, from <%s>, to %s", c.Envelope, c.Item.Account, c.Item.From, strings.Join(c.Item.To, ", "))
}

// readNote reads the origin and time of move from a note.
func readNote(path string) (origin string, moved time.Time) {
	f, err := os.Open(path)
	if err != nil {
		return "", time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "was":
			origin, _, _ = strings.Cut(v, "/")
		case "moved":
			moved, _ = time.Parse(time.RFC3339, v)
		}
	}
	return origin, moved
}

// inspectAt diagnoses the file at path (name name, in directory dir: a
// state's or corrupt/). ok is false when the file is missing or intact.
func (o *Outbox) inspectAt(dir, name string) (Corrupt, []byte, bool, error) {
	var path string
	s, inState := dirState(dir)
	if inState {
		path = o.path(s, name)
	} else {
		path = o.corruptPath(name)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Corrupt{}, nil, false, nil
	}
	if err != nil {
		return Corrupt{}, nil, false, fmt.Errorf("outbox: read %s: %w", path, err)
	}
	var origin string
	var moved time.Time
	if !inState {
		origin, moved = readNote(path + ".note")
		if origin == "" {
			origin = stateDir(StateQueued)
			if st, _, _ := bytes.Cut(b, []byte("\n")); bytes.Contains(st, []byte(`"state":"dead"`)) {
				origin = dirDead
			}
		}
		s, _ = dirState(origin)
	}
	id := name
	if !inState {
		// A -N suffix is the quarantine's, not the message's.
		if i := strings.LastIndexByte(name, '-'); i > 0 && strings.Count(name, "-") > 1 {
			id = name[:i]
		}
	}
	c, data, damaged := diagnose(b, id, s)
	if !damaged && inState {
		return Corrupt{}, nil, false, nil
	}
	if !damaged {
		// An intact file in corrupt/ (moved there by hand): offer it.
		c.Check, c.Expected, c.Found = "none", "-", "intact"
		c.Envelope, c.Headers, c.Recoverable = EnvelopeMetadata, headersComplete(data), true
	}
	c.Name, c.Path, c.Moved, c.Origin, c.MovedAt = name, path, !inState, origin, moved
	if inState {
		c.Origin = dir
	}
	msgID := c.Item.ID
	if !validID(msgID) {
		msgID = id
	}
	for _, st := range []State{StateQueued, StateDead, StateSent} {
		if inState && st == s {
			continue
		}
		if _, err := os.Stat(o.path(st, msgID)); err == nil {
			c.Duplicate = stateDir(st)
			c.Recoverable, c.NeedsAccount = false, false
			c.Reason = fmt.Sprintf("an intact copy of the message is in %s/: this damaged copy is a leftover", c.Duplicate)
			break
		}
	}
	if c.Duplicate == "" && c.Item.Key != "" && (c.Recoverable || c.NeedsAccount) {
		if other, ok := o.lookupKey(keyName(c.Item.Key), o.opts.Now()); ok && other != msgID {
			c.Recoverable, c.NeedsAccount = false, false
			c.Reason = fmt.Sprintf("its idempotency key now belongs to message %s (sent again since): requeueing would send it twice", other)
		}
	}
	return c, data, true, nil
}

// Corrupt returns the damaged spool files: those in corrupt/ and, not yet
// moved, damaged files in queue/ and dead/, sorted by name. It only reads.
func (o *Outbox) Corrupt() ([]Corrupt, error) {
	var out []Corrupt
	for _, d := range []string{dirCorrupt, dirQueue, dirDead} {
		names, err := o.listDir(d)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			c, _, ok, err := o.inspectAt(d, n)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b Corrupt) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Inspect returns a damaged spool file by name (in corrupt/, else
// damaged in queue/ or dead/) with the message bytes that survived. It
// only reads; ErrNotFound when there is no damaged file of that name.
func (o *Outbox) Inspect(name string) (Corrupt, []byte, error) {
	if !validID(name) {
		return Corrupt{}, nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	for _, d := range []string{dirCorrupt, dirQueue, dirDead} {
		c, data, ok, err := o.inspectAt(d, name)
		if err != nil {
			return Corrupt{}, nil, err
		}
		if ok {
			return c, data, nil
		}
	}
	return Corrupt{}, nil, fmt.Errorf("%w: no damaged file %s", ErrNotFound, name)
}

// RequeueCorrupt puts the message recovered from a damaged spool file
// back in the queue, due now: the envelope (recipients still pending,
// those already delivered), the idempotency key and the id are kept, the
// message bytes are those that survived, with a fresh size and checksum,
// and Item.Recovered says what was wrong. account, when not empty, sets
// the delivery account (needed when it did not survive). A damaged file
// still in queue/ or dead/ is moved to corrupt/ first. It fails with
// ErrUnrecoverable when the message cannot be sent as it is, ErrBusy when
// a delivery holds the file, ErrNotFound when there is no damaged file
// of that name.
func (o *Outbox) RequeueCorrupt(name, account string) (Item, error) {
	if !validID(name) {
		return Item{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	lf, err := o.lockCorrupt(name)
	if err != nil {
		return Item{}, err
	}
	defer lf.unlock()
	dir := filepath.Base(filepath.Dir(lf.path))
	cname := filepath.Base(lf.path)
	c, data, ok, err := o.inspectAt(dir, cname)
	if err != nil {
		return Item{}, err
	}
	if !ok {
		return Item{}, fmt.Errorf("%w: no damaged file %s", ErrNotFound, name)
	}
	switch {
	case c.NeedsAccount && account == "":
		return Item{}, fmt.Errorf("%w: %s: %s", ErrUnrecoverable, name, c.Reason)
	case !c.Recoverable && !c.NeedsAccount:
		return Item{}, fmt.Errorf("%w: %s: %s", ErrUnrecoverable, name, c.Reason)
	}
	it := c.Item
	if !validID(it.ID) || c.Envelope != EnvelopeMetadata {
		it.ID = name
		if i := strings.LastIndexByte(name, '-'); i > 0 && strings.Count(name, "-") > 1 {
			it.ID = name[:i]
		}
	}
	if account != "" {
		it.Account = account
	}
	env := Envelope{Account: it.Account, From: it.From, To: it.To, Key: it.Key}
	if err := checkEnvelope(&env); err != nil {
		return Item{}, fmt.Errorf("%w: %s: recovered envelope: %v", ErrUnrecoverable, name, err)
	}
	if c.Origin == dirDead || it.State == StateDead {
		it.Refused, it.DeadAt, it.DeadReason = nil, time.Time{}, ""
	}
	now := o.opts.Now()
	it.Seq++
	it.State = StateQueued
	it.Attempts, it.Created, it.NextAttempt = 0, now, now
	it.Recovered = fmt.Sprintf("%s: requeued from corrupt/%s after a failed %s check (expected %s, found %s)",
		now.UTC().Format(time.RFC3339), cname, c.Check, c.Expected, c.Found)
	content, err := encodeFile(&it, data)
	if err != nil {
		return Item{}, err
	}
	qp := o.path(StateQueued, it.ID)
	if _, err := os.Lstat(qp); err == nil {
		return Item{}, fmt.Errorf("%w: %s: queue/%s exists", ErrUnrecoverable, name, it.ID)
	}
	// The queue copy first (flushed), then the damaged one goes: a crash
	// in between leaves both, and the damaged one is then reported as a
	// leftover (Duplicate).
	if err := o.replaceFile(qp, content, true); err != nil {
		return Item{}, fmt.Errorf("outbox: requeue %s: %w", name, err)
	}
	if err := os.Remove(lf.path); err != nil {
		return it, fmt.Errorf("outbox: requeue %s: remove damaged file: %w", name, err)
	}
	os.Remove(lf.path + ".note")
	if err := syncDir(filepath.Dir(lf.path)); err != nil {
		o.log.Warn("outbox: flush corrupt/", "error", err)
	}
	o.idx.upsert(it, nil)
	o.log.Warn("outbox: damaged message recovered and requeued",
		"id", it.ID, "from", lf.path, "check", c.Check, "expected", c.Expected, "found", c.Found,
		"missing_bytes", c.Missing, "envelope", c.Envelope, "account", it.Account, "recipients", it.To)
	return it, nil
}

// lockCorrupt locks the damaged file name: in corrupt/, or damaged in
// queue/ or dead/, which it moves to corrupt/ first (under the lock).
func (o *Outbox) lockCorrupt(name string) (*lockedFile, error) {
	lf, err := lockFile(o.corruptPath(name))
	if err == nil {
		return lf, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("outbox: %s: %w", name, err)
	}
	for _, s := range []State{StateQueued, StateDead} {
		lf, err := o.lockExisting(s, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		_, _, b, err := lf.readRaw()
		if !errors.Is(err, ErrCorrupt) {
			lf.unlock()
			if err != nil {
				return nil, fmt.Errorf("outbox: %w", err)
			}
			return nil, fmt.Errorf("%w: %s is not damaged", ErrNotFound, name)
		}
		to, err := o.quarantine(lf.path, name, s, b)
		if err != nil {
			lf.unlock()
			return nil, err
		}
		if s == StateQueued {
			o.idx.remove(name)
		}
		lf.path = to // the lock is on the file, wherever it is now
		return lf, nil
	}
	return nil, fmt.Errorf("%w: no damaged file %s", ErrNotFound, name)
}

// listDir returns the valid spool names in a spool subdirectory; none
// when it does not exist.
func (o *Outbox) listDir(d string) ([]string, error) {
	if s, ok := dirState(d); ok {
		return o.listIDs(s)
	}
	names, err := readNames(filepath.Join(o.dir, d))
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return !validID(n) }), nil
}
