// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): datagrams such as "READY=1" sent to the unix socket named
// by $NOTIFY_SOCKET, and the watchdog interval from $WATCHDOG_USEC.
//
// The protocol is a few lines, so it is implemented here rather than
// pulled in as a dependency. A Notifier made without $NOTIFY_SOCKET does
// nothing, so callers never check whether they run under systemd.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends state changes to the service manager. The zero value and
// a nil *Notifier send nothing.
type Notifier struct {
	addr *net.UnixAddr // nil: not under a service manager
}

// New reads $NOTIFY_SOCKET through getenv. A name starting with '@' is in
// the abstract namespace. Without the variable the Notifier does nothing.
func New(getenv func(string) (string, bool)) *Notifier {
	name, ok := getenv("NOTIFY_SOCKET")
	if !ok || name == "" {
		return &Notifier{}
	}
	// The net package maps a leading '@' to the abstract namespace.
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends one datagram made of the lines given ("READY=1",
// "STATUS=..."). It does nothing when no service manager listens.
func (n *Notifier) Notify(lines ...string) error {
	if !n.Enabled() {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(lines, "\n"))); err != nil {
		return fmt.Errorf("sd_notify %s: %w", lines[0], err)
	}
	return nil
}

// Ready says start-up is complete (READY=1).
func (n *Notifier) Ready() error { return n.Notify("READY=1") }

// Stopping says shutdown has begun (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1") }

// Reloading says a configuration reload has begun. MONOTONIC_USEC is the
// CLOCK_MONOTONIC time, which systemd 253 and later want with RELOADING=1
// for Type=notify-reload. Send Ready when the reload is over.
func (n *Notifier) Reloading() error {
	return n.Notify("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// Status sends a free-form status line (STATUS=...) shown by systemctl.
func (n *Notifier) Status(s string) error {
	return n.Notify("STATUS=" + strings.ReplaceAll(s, "\n", " "))
}

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or 0 when the
// watchdog is off, $WATCHDOG_USEC is invalid, or $WATCHDOG_PID names
// another process than pid.
func WatchdogInterval(getenv func(string) (string, bool), pid int) time.Duration {
	v, ok := getenv("WATCHDOG_USEC")
	if !ok || v == "" {
		return 0
	}
	usec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if p, ok := getenv("WATCHDOG_PID"); ok && p != "" {
		if n, err := strconv.Atoi(p); err != nil || n != pid {
			return 0
		}
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// Watchdog sends WATCHDOG=1 every interval until ctx ends; with interval
// 0 or no service manager it returns at once. Errors are handed to onErr
// (nil: ignored) and do not stop it.
func (n *Notifier) Watchdog(ctx context.Context, interval time.Duration, onErr func(error)) {
	if !n.Enabled() || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := n.Notify("WATCHDOG=1"); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
