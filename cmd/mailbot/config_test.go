package main

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestLineOf(t *testing.T) {
	t.Parallel()
	const doc = `scripts_dir: s
accounts:
  relay:
    host: h
    port: 0
dev_server:
  listen: x
`
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path []string
		want int
	}{
		{[]string{"scripts_dir"}, 1},
		{[]string{"accounts"}, 2},
		{[]string{"accounts", "relay", "port"}, 5},
		{[]string{"accounts", "relay", "tls"}, 3}, // absent: the owning section
		{[]string{"dev_server", "listen"}, 7},
		{[]string{"nope", "x"}, 0},
	}
	for _, tc := range tests {
		if got := lineOf(&root, tc.path...); got != tc.want {
			t.Errorf("lineOf(%v) = %d, want %d", tc.path, got, tc.want)
		}
	}
}

func TestParseConfigDefaultsAndPaths(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("/etc/mailbot/mailbot.yaml", []byte("scripts_dir: scripts\nstate_dir: /var/lib/mailbot\nrun_timeout: 2m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if probs := cfg.Validate(); len(probs) != 0 {
		t.Fatalf("unexpected problems: %v", probs)
	}
	if cfg.Workers != 4 || cfg.RunTimeout != 2*time.Minute || cfg.Log.Level != "info" || cfg.Sandbox != "strict" {
		t.Errorf("defaults not kept: %+v", cfg)
	}
	if got := cfg.Resolve(cfg.ScriptsDir); got != "/etc/mailbot/scripts" {
		t.Errorf("scripts_dir resolves to %q", got)
	}
	if got := cfg.Resolve(cfg.StateDir); got != "/var/lib/mailbot" {
		t.Errorf("absolute state_dir became %q", got)
	}
}

func TestCheckSecrets(t *testing.T) {
	t.Parallel()
	const doc = `accounts:
  a:
    host: h
    username: u
    password_env: A_PW
  b:
    host: h
    username: u
  dev:
    host: dev_server
    username: u
dev_server: {}
`
	cfg, err := ParseConfig("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	probs := cfg.CheckSecrets(func(string) (string, bool) { return "", false })
	want := []string{
		"m.yaml:5: accounts.a.password_env: environment variable A_PW is not set",
		"m.yaml:6: accounts.b: username is set but there is no password_env or password_file",
	}
	if len(probs) != len(want) {
		t.Fatalf("got %v, want %v", probs, want)
	}
	for i := range want {
		if probs[i].String() != want[i] {
			t.Errorf("problem %d = %q, want %q", i, probs[i], want[i])
		}
	}
}

func TestSecretKeys(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("/etc/mailbot/mailbot.yaml", []byte(`scripts_dir: s
state_dir: st
accounts:
  relay:
    host: h
    password_env: RELAY_PW
  filed:
    host: h
    password_file: secrets/filed
  none:
    host: h
`))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.SecretKeys()
	want := []SecretKey{
		{Path: []string{"accounts", "filed", "password_file"}, Kind: "file", Value: "/etc/mailbot/secrets/filed"},
		{Path: []string{"accounts", "relay", "password_env"}, Kind: "env", Value: "RELAY_PW"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SecretKeys = %+v, want %+v", got, want)
	}
	reg := cfg.Secrets()
	if err := reg.CheckEnv("RELAY_PW"); err == nil || err.Error() != "RELAY_PW holds a secret of account relay; use c:login()" {
		t.Errorf("CheckEnv = %v", err)
	}
	if err := reg.CheckEnv("HOME"); err != nil {
		t.Errorf("HOME: %v", err)
	}
}

func TestCheckDevListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		listen string
		remote bool
		want   string // substring of the problem; "" for none
	}{
		{"", false, ""},
		{"127.0.0.1:2525", false, ""},
		{"127.0.0.1:0", false, ""},
		{"[::1]:2525", false, ""},
		{"localhost:2525", false, ""},
		{"127.0.0.1:99999", false, "must be 1-65535"},
		{"127.0.0.1:-1", false, "must be 1-65535"},
		{"127.0.0.1:smtp", false, "must be 1-65535"},
		{"127.0.0.1", false, "want host:port"},
		{"0.0.0.0:2525", false, "allow_remote: true"},
		{":2525", false, "allow_remote: true"},
		{"192.0.2.1:2525", false, "not a loopback address"},
		{"0.0.0.0:2525", true, ""},
		{"0.0.0.0:99999", true, "must be 1-65535"},
	}
	for _, tc := range tests {
		got := checkDevListen(tc.listen, tc.remote)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("checkDevListen(%q, %v) = %q, want %q", tc.listen, tc.remote, got, tc.want)
		}
	}
}

// validationText parses data as the config file path and returns what is
// wrong with it: the parse error, or every Validate problem, one a line,
// with path's folder cut from the file names.
func validationText(path string, data []byte) string {
	text := ""
	if cfg, err := ParseConfig(path, data); err != nil {
		text = err.Error()
	} else {
		var got []string
		for _, p := range cfg.Validate() {
			got = append(got, p.String())
		}
		text = strings.Join(got, "\n")
	}
	if dir := filepath.Dir(path); dir != "." {
		text = strings.ReplaceAll(text, dir+string(filepath.Separator), "")
	}
	return text
}
