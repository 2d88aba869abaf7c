package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/luabind"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512MiB", 512 << 20, true},
		{"1GiB", 1 << 30, true},
		{"256MB", 256e6, true},
		{"1.5 GiB", 3 << 29, true},
		{"64mib", 64 << 20, true},
		{"2Gi", 2 << 30, true},
		{"1048576", 1 << 20, true},
		{"10KB", 10000, true},
		{"0", 0, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"12 parsecs", 0, false},
		{"-5MiB", 0, false},
		{"1e30TiB", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestLimitsMemoryConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml    string
		want    int64
		problem string
	}{
		{"", luabind.DefaultMemoryLimit, ""},
		{"limits:\n  memory: 64MiB\n", 64 << 20, ""},
		{"limits:\n  memory: 1073741824\n", 1 << 30, ""},
		{"limits:\n  memory: off\n", -1, ""},
		{"limits:\n  memory: 0\n", -1, ""},
		{"limits:\n  memory: lots\n", 0, `mailbot.yaml:4: limits.memory: "lots" is not a size like "512MiB", "1GiB" or "256MB", or "off"`},
		{"limits:\n  memory: 100KiB\n", 0, `mailbot.yaml:4: limits.memory: "100KiB" is below the minimum of 1MiB`},
	}
	for _, tc := range tests {
		cfg, err := ParseConfig("mailbot.yaml", []byte("scripts_dir: s\nstate_dir: st\n"+tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		probs := cfg.Validate()
		if tc.problem != "" {
			if len(probs) != 1 || !strings.HasPrefix(probs[0].String(), tc.problem) {
				t.Errorf("%q: problems %v, want %q", tc.yaml, probs, tc.problem)
			}
			continue
		}
		if len(probs) != 0 {
			t.Errorf("%q: unexpected problems %v", tc.yaml, probs)
		}
		if got := cfg.memoryLimit(); got != tc.want {
			t.Errorf("%q: memoryLimit() = %d, want %d", tc.yaml, got, tc.want)
		}
	}
	cfg, _ := ParseConfig("mailbot.yaml", []byte("limits:\n  memroy: 1GiB\n"))
	if cfg != nil {
		t.Error("a misspelt key under limits was accepted")
	}
}

// TestExecMemoryLimit runs memory hogs under exec: limits.memory stops
// them quickly with a memory error naming the limit, and a huge string.rep
// is refused at once instead of ending the process.
func TestExecMemoryLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), "scripts_dir: .\nstate_dir: state\nrun_timeout: 3s\nlimits:\n  memory: 32MiB\n")
	writeFile(t, filepath.Join(dir, "grow.lua"), "local t = {}\nfor i = 1, 1e10 do t[i] = i end\n")
	writeFile(t, filepath.Join(dir, "rep.lua"), "local s = string.rep('x', 1e10)\n")
	writeFile(t, filepath.Join(dir, "rep6.lua"), "local s = string.rep('x', 6e9)\n")
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"table growth", []string{"exec", "-c", "mailbot.yaml", "grow.lua"},
			"grow.lua:2: memory: the script's Lua values take more than the memory limit of 32 MiB (limits.memory)"},
		{"string.rep 1e10", []string{"exec", "-c", "mailbot.yaml", "rep.lua"},
			"rep.lua:1: memory: string.rep: a result of 9.3 GiB would exceed the memory limit of 32 MiB (limits.memory)"},
		{"string.rep 6e9, default limit", []string{"exec", "rep6.lua"},
			"rep6.lua:1: memory: string.rep: a result of 5.6 GiB would exceed the memory limit of 512 MiB (limits.memory)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mailbot(t, dir, nil, tc.args...)
			if r.code != exitFailure || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("want exit 1 with %q, got %v", tc.stderr, r)
			}
		})
	}
}
