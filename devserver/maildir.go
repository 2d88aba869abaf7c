package devserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maildir delivers messages into a Maildir following the rules of
// https://cr.yp.to/proto/maildir.html: write under tmp/, sync, then rename
// into new/ so that readers never see a partial file.
type maildir struct {
	dir     string
	host    string // hostname, sanitised for use in a file name
	pid     string
	counter atomic.Uint64
}

// openMaildir creates dir and its tmp, new and cur subdirectories when
// missing.
func openMaildir(dir string) (*maildir, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("devserver: create maildir: %w", err)
		}
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return &maildir{dir: dir, host: maildirHost(host), pid: strconv.Itoa(os.Getpid())}, nil
}

// maildirHost makes a hostname safe for a Maildir file name. The spec
// reserves "/" and ":" (the latter starts the info suffix), so they are
// replaced by their octal escapes.
func maildirHost(host string) string {
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
}

// uniqueName returns "<unixnano>.<pid>_<counter>.<host>". The per-process
// counter keeps names unique even when two deliveries share a timestamp.
func (md *maildir) uniqueName(now time.Time) string {
	n := md.counter.Add(1)
	return strconv.FormatInt(now.UnixNano(), 10) + "." + md.pid + "_" +
		strconv.FormatUint(n, 10) + "." + md.host
}

// deliver stores data and returns the path of the file in new/.
func (md *maildir) deliver(data []byte, now time.Time) (path string, err error) {
	name := md.uniqueName(now)
	tmp := filepath.Join(md.dir, "tmp", name)
	// O_EXCL: a clash means the unique name is not unique, which must not
	// silently overwrite another message.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("devserver: create maildir file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("devserver: write maildir file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("devserver: sync maildir file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("devserver: close maildir file: %w", err)
	}
	dst := filepath.Join(md.dir, "new", name)
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("devserver: move maildir file into new: %w", err)
	}
	// Sync the directory so the rename itself survives a crash. This is
	// best effort: some platforms cannot sync directories, and the message
	// is already complete on disk.
	if d, err := os.Open(filepath.Join(md.dir, "new")); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return dst, nil
}
