package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
)

// gatedWriter passes writes through, except that the first one holding
// the server's reply to a message ("queued") waits for release.
type gatedWriter struct {
	w        io.Writer
	once     sync.Once
	entered  chan struct{}
	released chan struct{}
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("queued")) {
		g.once.Do(func() {
			close(g.entered)
			<-g.released
		})
	}
	return g.w.Write(p)
}

func sendVia(ctx context.Context, addr string, debug io.Writer, from, to string) error {
	d := smtp.Dialer{TLS: smtp.TLSNone, Debug: debug}
	c, err := d.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: for %s\r\n\r\nbody\r\n", from, to, to)
	if _, err := c.SendMail(ctx, from, []string{to}, []byte(msg), nil); err != nil {
		return err
	}
	_, err = c.Quit(ctx)
	return err
}

// checkPairs checks that every captured message's transcript is the one
// of the connection that sent it: its last RCPT is the message's To.
func checkPairs(t *testing.T, dir string, want int) {
	t.Helper()
	emls, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(emls) != want {
		t.Fatalf("%d messages captured, want %d", len(emls), want)
	}
	for _, e := range emls {
		raw, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(raw), "To: <")
		to, _, _ := strings.Cut(rest, ">")
		tr, err := os.ReadFile(strings.TrimSuffix(e, ".eml") + ".transcript")
		if err != nil {
			t.Fatalf("no transcript for %s: %v", e, err)
		}
		i := strings.LastIndex(string(tr), "C: RCPT TO:<")
		if i < 0 || !strings.HasPrefix(string(tr[i:]), "C: RCPT TO:<"+to+">") {
			t.Errorf("%s (to %s) paired with the transcript of another connection:\n%s", filepath.Base(e), to, tr)
		}
	}
}

// TestDryRunPairsTranscriptByConnection: connection A's message is stored
// first, but A reads the server's reply only after connection B, with the
// same sender, has sent its whole message. Each transcript must still go
// with its own message.
func TestDryRunPairsTranscriptByConnection(t *testing.T) {
	dir := t.TempDir()
	c, err := startCapture(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gate := &gatedWriter{w: c.Transcript("a.example:25"), entered: make(chan struct{}), released: make(chan struct{})}
	aDone := make(chan error, 1)
	go func() { aDone <- sendVia(ctx, c.srv.Addr(), gate, "bot@example.com", "a@example.com") }()
	select {
	case <-gate.entered: // A's message is stored; A has not read the reply
	case err := <-aDone:
		t.Fatalf("connection A ended early: %v", err)
	case <-ctx.Done():
		t.Fatal("connection A never got its reply")
	}
	if err := sendVia(ctx, c.srv.Addr(), c.Transcript("b.example:25"), "bot@example.com", "b@example.com"); err != nil {
		t.Fatal(err)
	}
	close(gate.released)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checkPairs(t, dir, 2)
}

// TestDryRunConcurrentSameSender sends from one sender over many
// connections at once.
func TestDryRunConcurrentSameSender(t *testing.T) {
	dir := t.TempDir()
	c, err := startCapture(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const conns = 8
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sendVia(ctx, c.srv.Addr(), c.Transcript("relay.example:25"), "bot@example.com", fmt.Sprintf("r%d@example.com", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checkPairs(t, dir, conns)
}
