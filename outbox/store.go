package outbox

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Spool subdirectories. Every file in queue/, dead/ and sent/ is named by
// its message id and holds one JSON metadata line followed by the message.
const (
	dirQueue = "queue"
	dirDead  = "dead"
	dirSent  = "sent"
	dirKeys  = "keys"
	dirTmp   = "tmp"
	// dirCorrupt holds damaged spool files, moved there byte for byte
	// with a <name>.note beside each (see quarantine).
	dirCorrupt = "corrupt"
	lockName   = "lock"
)

// formatVersion is written as "v" in every metadata line.
const formatVersion = 1

// State says where a message is.
type State string

// Message states, also the spool directory that holds the message.
const (
	StateQueued State = "queued"
	StateDead   State = "dead"
	StateSent   State = "sent"
)

// Reply is a server reply recorded with a message.
type Reply struct {
	// Command is the SMTP verb that got the reply ("RCPT", "." ...).
	Command string `json:"command,omitempty"`
	// Code is the three-digit reply code; 0 when the failure was not a
	// server reply (connection refused, timeout).
	Code int `json:"code,omitempty"`
	// Enhanced is the RFC 3463 code, e.g. "5.1.1", or "".
	Enhanced string `json:"enhanced,omitempty"`
	// Text is the reply text, or the error when there was no reply.
	Text string `json:"text"`
}

// Refusal records why one recipient was not delivered.
type Refusal struct {
	Recipient string    `json:"recipient"`
	Reply     Reply     `json:"reply"`
	At        time.Time `json:"at"`
}

// Item is the metadata of one message in the spool. It is stored as the
// first line of the message's file, in JSON, exactly with these field
// names, so `head -1 queue/<id>` shows it.
type Item struct {
	Version int    `json:"v"`
	ID      string `json:"id"`
	// Seq grows with every rewrite of the file; after a crash in the
	// middle of moving a message between directories, the copy with the
	// higher Seq wins.
	Seq   int64 `json:"seq"`
	State State `json:"state"`
	// Account names the delivery account (Options of Deliver).
	Account string `json:"account"`
	From    string `json:"from"`
	// To holds the recipients still to deliver (queued) or that were not
	// delivered (dead).
	To []string `json:"to"`
	// Delivered lists the recipients the server has already accepted.
	Delivered []string `json:"delivered,omitempty"`
	// Refused holds permanent refusals, and for a dead message the last
	// reply of every recipient in To.
	Refused []Refusal `json:"refused,omitempty"`
	// Waiting holds, for a queued message, the temporary failure that
	// deferred each recipient still in To at the last attempt: why each
	// pending recipient waits, apart from the permanent refusals.
	Waiting []Refusal `json:"waiting,omitempty"`
	// Key is the idempotency key ("" for none).
	Key string `json:"key,omitempty"`
	// Size and CRC describe the message bytes that follow the metadata
	// line; a file whose bytes do not match was torn by a crash.
	Size        int       `json:"size"`
	CRC         uint32    `json:"crc32c"`
	Created     time.Time `json:"created"`
	NextAttempt time.Time `json:"next_attempt"`
	Attempts    int       `json:"attempts"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// LastError is the error of the last failed attempt, and LastReply
	// the server's reply when there was one. When recipients are still
	// pending, they describe why those wait (a pending recipient's
	// temporary failure), not another recipient's permanent refusal.
	LastError string `json:"last_error,omitempty"`
	LastReply *Reply `json:"last_reply,omitempty"`
	// DeadAt and DeadReason are set when the message became a dead letter.
	DeadAt     time.Time `json:"dead_at,omitzero"`
	DeadReason string    `json:"dead_reason,omitempty"`
	// Via names the account whose session made the last attempt when
	// that was one of Account's fallbacks (see Account.Fallback); "" when
	// it was Account itself. For a delivered message (in sent/) it is the
	// fallback that delivered it; a message delivered in parts records
	// the account of the last part.
	Via string `json:"via,omitempty"`
	// MessageID and Subject are the message's Message-ID and (decoded)
	// Subject headers, read at enqueue, for logs and alerts; "" when
	// absent.
	MessageID string `json:"message_id,omitempty"`
	Subject   string `json:"subject,omitempty"`
	// Reply is the relay's reply to the message's final dot at the last
	// attempt that delivered to some recipient, e.g. "250 2.0.0 Ok:
	// queued as 4Zx...": its queue id traces the delivery at the relay.
	// SentAt is when a delivered message (in sent/) was accepted.
	Reply  string    `json:"reply,omitempty"`
	SentAt time.Time `json:"sent_at,omitzero"`
	// NoAlert marks a message enqueued by an alert handler (see
	// Options.OnDeadLetter and WithoutAlerts): its becoming a dead letter
	// calls no OnDeadLetter, so an alert about an alert cannot loop.
	NoAlert bool `json:"no_alert,omitempty"`
	// Recovered is set on a message put back in the queue from a damaged
	// spool file (see Outbox.RequeueCorrupt): when, and what was wrong.
	Recovered string `json:"recovered,omitempty"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// encodeFile returns the file content for it and data.
func encodeFile(it *Item, data []byte) ([]byte, error) {
	it.Version = formatVersion
	it.Size = len(data)
	it.CRC = crc32.Checksum(data, crcTable)
	meta, err := json.Marshal(it)
	if err != nil {
		return nil, fmt.Errorf("encode metadata of %s: %w", it.ID, err)
	}
	buf := make([]byte, 0, len(meta)+1+len(data))
	buf = append(buf, meta...)
	buf = append(buf, '\n')
	return append(buf, data...), nil
}

// ErrCorrupt marks a spool file that fails its check: no readable
// metadata line, or message bytes that do not match the size and CRC-32C
// it records. Such files are never deleted: they are moved to corrupt/
// (see Outbox.Corrupt).
var ErrCorrupt = errors.New("outbox: damaged spool file")

// decodeFile splits a spool file into metadata and message bytes and checks
// them against each other.
func decodeFile(b []byte) (Item, []byte, error) {
	var it Item
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return it, nil, fmt.Errorf("%w: no metadata line", ErrCorrupt)
	}
	if err := json.Unmarshal(b[:i], &it); err != nil {
		return it, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	data := b[i+1:]
	if it.Version != formatVersion {
		return it, nil, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, it.Version)
	}
	if len(data) != it.Size || crc32.Checksum(data, crcTable) != it.CRC {
		return it, nil, fmt.Errorf("%w: message bytes do not match size/checksum", ErrCorrupt)
	}
	return it, data, nil
}

// readMeta reads only the metadata line of a spool file.
func readMeta(path string) (Item, error) {
	var it Item
	f, err := os.Open(path)
	if err != nil {
		return it, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 4096).ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return it, fmt.Errorf("%s: %w: no metadata line", path, ErrCorrupt)
		}
		return it, err
	}
	if err := json.Unmarshal(line, &it); err != nil {
		return it, fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
	}
	return it, nil
}

// newID returns a fresh message id: the enqueue time in hex microseconds
// (so ids sort by age) and 8 random hex digits.
func newID(now time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	return fmt.Sprintf("%014x-%s", now.UnixMicro(), hex.EncodeToString(r[:]))
}

// validID reports whether id can name a spool file: it comes from the CLI,
// so it must not be able to reach outside the spool.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

// keyName returns the keys/ file name for an idempotency key.
func keyName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// keyRecord is what a keys/ file says. The file is a hard link to the
// message's spool file as first queued, whose metadata line (an Item)
// has these three fields under the same names; spools written before
// that, and file systems without hard links, hold the record itself as
// one JSON line.
type keyRecord struct {
	Key     string    `json:"key"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// readKeyRecord reads the first line of a keys/ file, which is the whole
// record in either form, without reading a linked message's bytes.
func readKeyRecord(path string) (keyRecord, error) {
	var kr keyRecord
	f, err := os.Open(path)
	if err != nil {
		return kr, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 4096).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return kr, err
	}
	if err := json.Unmarshal(line, &kr); err != nil {
		return kr, fmt.Errorf("%s: %w: %v", path, errBadKeyRecord, err)
	}
	return kr, nil
}

// errBadKeyRecord: a keys/ file whose first line is no record.
var errBadKeyRecord = errors.New("unreadable idempotency key record")

// writeTemp writes content to a new file in tmp/ and returns its path.
// With sync the data is flushed to stable storage before returning.
func (o *Outbox) writeTemp(content []byte, sync bool) (string, error) {
	name, _, err := o.writeTempStat(content, sync)
	return name, err
}

// writeTempStat is writeTemp that also returns the file's FileInfo
// (fstat: cheaper than a stat of the path after the rename, which keeps
// the file's identity).
func (o *Outbox) writeTempStat(content []byte, sync bool) (string, os.FileInfo, error) {
	f, err := os.CreateTemp(filepath.Join(o.dir, dirTmp), "w-*")
	if err != nil {
		return "", nil, fmt.Errorf("create temp file: %w", err)
	}
	name := f.Name()
	_, err = f.Write(content)
	if err == nil && sync {
		err = f.Sync()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", nil, fmt.Errorf("write temp file: %w", err)
	}
	return name, fi, nil
}

// replaceFile atomically sets path to content (temp file + rename). With
// sync, the file and the directory are flushed, so the new content
// survives a power failure.
func (o *Outbox) replaceFile(path string, content []byte, sync bool) error {
	tmp, err := o.writeTemp(content, sync)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	if sync {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

// syncDir flushes a directory, making renames and removals in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// path returns the spool file of id in state s.
func (o *Outbox) path(s State, id string) string {
	switch s {
	case StateDead:
		return filepath.Join(o.dir, dirDead, id)
	case StateSent:
		return filepath.Join(o.dir, dirSent, id)
	default:
		return filepath.Join(o.dir, dirQueue, id)
	}
}

// lockedFile is a spool file opened and locked against other deliveries
// and CLI operations, in this or any other process.
type lockedFile struct {
	f    *os.File
	path string
	size int64       // from fstat under the lock; spool files never change in place
	mode os.FileMode // permission bits, with sentMarkBit when delivered
	// moveTo, when set, is where the file goes (sent/) before its lock is
	// released: the delivery was recorded with markSent. sentRecord, when
	// set, is written there instead of moving the file (see settleSent);
	// receipt is the delivery's receipt (see writeReceipts).
	moveTo     string
	sentRecord []byte
	receipt    receipt
}

// sentMarkBit in a queued file's mode records "the server accepted this
// message" (see markSent). Spool files are created without it.
const sentMarkBit os.FileMode = 0o100

// sentMarked reports a queued file delivered before a crash (or by a
// process that has not moved it yet).
func (l *lockedFile) sentMarked() bool { return l.mode&sentMarkBit != 0 }

// markSent records the delivery on the file itself with one fchmod(2):
// like a rename it survives the death of the process at once, but it
// costs a fraction, so the move into sent/ can happen off the delivery
// path. It fails where the platform has no such bit.
func (l *lockedFile) markSent() error {
	if err := chmodFile(l.f, l.mode|sentMarkBit); err != nil {
		return err
	}
	l.mode |= sentMarkBit
	return nil
}

// lockFile opens path and takes its exclusive lock without waiting. It
// fails with ErrBusy when another holder has it, and with an error
// wrapping fs.ErrNotExist when the file is gone (delivered, deleted or
// replaced while we were getting the lock).
func lockFile(path string) (*lockedFile, error) {
	for range 3 {
		f, err := openRead(path)
		if err != nil {
			return nil, err
		}
		if err := tryLock(f); err != nil {
			f.Close()
			return nil, err
		}
		// The path may have been replaced (rewritten by rename) or removed
		// between open and lock; the lock is only worth something on the
		// file the path names now.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return &lockedFile{f: f, path: path, size: fi.Size(), mode: fi.Mode().Perm()}, nil
		}
		f.Close()
		if err2 != nil {
			return nil, err2
		}
	}
	return nil, ErrBusy
}

// read returns the file's metadata and message bytes. A spool file is
// written whole before it is renamed into place and never changed after,
// so the size seen under the lock is the whole file and one read(2)
// normally fetches it (io.ReadAll needs four or five for a small message);
// anything short is reported as torn by decodeFile.
func (l *lockedFile) read() (Item, []byte, error) {
	it, data, _, err := l.readRaw()
	return it, data, err
}

// readRaw is read that also returns the file's bytes, so a caller can
// quarantine a damaged file (the error then wraps ErrCorrupt).
func (l *lockedFile) readRaw() (Item, []byte, []byte, error) {
	b := make([]byte, l.size)
	n, err := io.ReadFull(l.f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !(errors.Is(err, io.EOF) && n == 0) {
		return Item{}, nil, nil, fmt.Errorf("read %s: %w", l.path, err)
	}
	b = b[:n]
	it, data, err := decodeFile(b)
	if err != nil {
		return it, nil, b, fmt.Errorf("%s: %w", l.path, err)
	}
	return it, data, b, nil
}

// unlock releases the lock (closing the file releases it). It may be
// called more than once.
func (l *lockedFile) unlock() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
