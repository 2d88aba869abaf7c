package sdnotify

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a unixgram socket the test owns and returns its
// NOTIFY_SOCKET name and a function reading the next datagram.
func listen(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading notification: %v", err)
		}
		return string(buf[:n])
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestNotify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		socket string
	}{
		{"path", filepath.Join(t.TempDir(), "notify.sock")},
		{"abstract", "@mailbot-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-") + time.Now().Format("150405.000000000")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := listen(t, tc.socket)
			n := New(env(map[string]string{"NOTIFY_SOCKET": tc.socket}))
			if !n.Enabled() {
				t.Fatal("not enabled with NOTIFY_SOCKET set")
			}
			if err := n.Ready(); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != "READY=1" {
				t.Errorf("got %q, want READY=1", got)
			}
			if err := n.Reloading(); err != nil {
				t.Fatal(err)
			}
			got := next()
			lines := strings.Split(got, "\n")
			if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") || lines[1] == "MONOTONIC_USEC=0" {
				t.Errorf("reloading sent %q", got)
			}
			if err := n.Stopping(); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != "STOPPING=1" {
				t.Errorf("got %q, want STOPPING=1", got)
			}
		})
	}
}

func TestDisabledDoesNothing(t *testing.T) {
	for _, n := range []*Notifier{nil, {}, New(env(nil))} {
		if n.Enabled() {
			t.Error("enabled without NOTIFY_SOCKET")
		}
		if err := n.Ready(); err != nil {
			t.Errorf("Ready: %v", err)
		}
		n.Watchdog(context.Background(), time.Millisecond, nil) // returns at once
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, 0},
		{map[string]string{"WATCHDOG_USEC": "x"}, 0},
		{map[string]string{"WATCHDOG_USEC": "0"}, 0},
	} {
		if got := WatchdogInterval(env(tc.env), 42); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestWatchdogSends(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	next := listen(t, sock)
	n := New(env(map[string]string{"NOTIFY_SOCKET": sock}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Watchdog(ctx, 5*time.Millisecond, nil) }()
	for range 3 {
		if got := next(); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	cancel()
	<-done
}
