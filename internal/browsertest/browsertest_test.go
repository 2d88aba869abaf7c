package browsertest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stopTB records how New stopped the test instead of stopping it.
type stopTB struct {
	testing.TB
	how, msg string
}

type stopped struct{}

func (s *stopTB) Helper() {}

func (s *stopTB) Fatalf(format string, args ...any) {
	s.how, s.msg = "fatal", fmt.Sprintf(format, args...)
	panic(stopped{})
}

func (s *stopTB) Skip(args ...any) {
	s.how, s.msg = "skip", fmt.Sprint(args...)
	panic(stopped{})
}

func run(tb *stopTB) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
		}
	}()
	New(tb, Options{})
	tb.how = "started"
}

// TestNewWithoutChromium: a missing browser skips with a hint, except
// under CI, where it fails.
func TestNewWithoutChromium(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-chromium")
	tests := []struct{ ci, want string }{
		{"", "skip"},
		{"false", "skip"},
		{"true", "fatal"},
	}
	for _, tc := range tests {
		t.Setenv("CHROMIUM", missing)
		t.Setenv("CI", tc.ci)
		tb := &stopTB{TB: t}
		run(tb)
		if tb.how != tc.want || !strings.Contains(tb.msg, "chromium not found: apt-get install chromium; CI installs it") {
			t.Errorf("CI=%q: %s %q, want %s with the install hint", tc.ci, tb.how, tb.msg, tc.want)
		}
	}
}

func TestFind(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "my-chromium")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHROMIUM", exe)
	if got, err := Find(); err != nil || got != exe {
		t.Errorf("Find with $CHROMIUM = %q, %v; want %q", got, err, exe)
	}
	t.Setenv("CHROMIUM", exe+"-missing")
	if _, err := Find(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "my-chromium-missing") {
		t.Errorf("Find with a missing $CHROMIUM: %v", err)
	}
	t.Setenv("CHROMIUM", "")
	t.Setenv("PATH", t.TempDir())
	if _, err := Find(); err != nil && !errors.Is(err, ErrNotFound) {
		t.Errorf("Find on an empty PATH: %v", err)
	}
}
