package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/luabind"
)

// writeTestCA writes a self-signed CA certificate in PEM to dir/name.
func writeTestCA(t *testing.T, dir, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPClientConfigValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTestCA(t, dir, "ca.pem")
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	const base = "scripts_dir: s\nstate_dir: st\n"
	tests := []struct {
		name, section string
		want          string // "" for no problem; else a substring, with the line
	}{
		{"absent", "", ""},
		{"empty", "http_client: {}\n", ""},
		{"all keys", "http_client:\n  allow_hosts: [api.example.com, \"*.corp.example\", \"127.0.0.1:8080\", \"[::1]:9000\"]\n  ca_file: ca.pem\n  max_bytes: 8MiB\n  timeout: 10s\n", ""},
		{"empty allow list", "http_client:\n  allow_hosts: []\n", ""},
		{"bad pattern, block list", "http_client:\n  allow_hosts:\n    - api.example.com\n    - \"https://x.example.com\"\n", "mailbot.yaml:7: http_client.allow_hosts.1: \"https://x.example.com\""},
		{"bad port", "http_client:\n  allow_hosts: [\"api.example.com:0\"]\n", "mailbot.yaml:5: http_client.allow_hosts.0: \"api.example.com:0\": port \"0\" must be 1-65535"},
		{"wildcard in the middle", "http_client:\n  allow_hosts: [\"a.*.example.com\"]\n", "want a host name, *.domain"},
		{"missing ca_file", "http_client:\n  ca_file: nope.pem\n", "mailbot.yaml:5: http_client.ca_file: cannot read nope.pem"},
		{"ca_file without a certificate", "http_client:\n  ca_file: junk.pem\n", "mailbot.yaml:5: http_client.ca_file: junk.pem holds no PEM certificate"},
		{"bad size", "http_client:\n  max_bytes: lots\n", "mailbot.yaml:5: http_client.max_bytes: \"lots\" is not a size"},
		{"zero size", "http_client:\n  max_bytes: \"0\"\n", "http_client.max_bytes: must be more than 0 bytes"},
		{"negative timeout", "http_client:\n  timeout: -1s\n", "mailbot.yaml:5: http_client.timeout: must be a positive duration"},
		{"unknown key", "http_client:\n  allow_host: [a]\n", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := validationText(filepath.Join(dir, "mailbot.yaml"), []byte(base+"\n"+tc.section))
			if tc.want == "" && all != "" || tc.want != "" && !strings.Contains(all, tc.want) {
				t.Errorf("problems:\n%s\nwant %q", all, tc.want)
			}
		})
	}
}

func TestApplyHTTPClient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTestCA(t, dir, "ca.pem")
	const base = "scripts_dir: s\nstate_dir: st\n"
	parse := func(t *testing.T, section string) luabind.Options {
		t.Helper()
		cfg, err := ParseConfig(filepath.Join(dir, "mailbot.yaml"), []byte(base+section))
		if err != nil {
			t.Fatal(err)
		}
		if probs := cfg.Validate(); len(probs) > 0 {
			t.Fatalf("problems: %v", probs)
		}
		var o luabind.Options
		cfg.applyHTTPClient(&o)
		return o
	}
	t.Run("absent", func(t *testing.T) {
		o := parse(t, "")
		if o.HTTP.AllowHosts != nil || o.HTTP.RootCAs != nil || o.HTTP.MaxBytes != 0 || o.HTTP.Timeout != 0 {
			t.Errorf("HTTP = %+v, want the defaults", o.HTTP)
		}
		if !strings.HasPrefix(o.HTTP.UserAgent, "mailbot/") {
			t.Errorf("UserAgent %q", o.HTTP.UserAgent)
		}
	})
	t.Run("set", func(t *testing.T) {
		o := parse(t, "http_client:\n  allow_hosts: [api.example.com]\n  ca_file: ca.pem\n  max_bytes: 1MiB\n  timeout: 5s\n")
		h := o.HTTP
		if len(h.AllowHosts) != 1 || h.AllowHosts[0] != "api.example.com" || h.AllowHostsSource != "http_client.allow_hosts (config line 4)" {
			t.Errorf("allow hosts %v from %q", h.AllowHosts, h.AllowHostsSource)
		}
		if h.RootCAs == nil || h.MaxBytes != 1<<20 || h.MaxBytesSource != "http_client.max_bytes" || h.Timeout != 5*time.Second {
			t.Errorf("HTTP = %+v", h)
		}
	})
	t.Run("endpoint without auth is closed to scripts", func(t *testing.T) {
		o := parse(t, "http:\n  listen: 127.0.0.1:9799\n")
		if fmt.Sprint(o.HTTP.DenyLoopbackPorts) != "[9799]" || o.HTTP.DenyLoopbackSource != "mailbot's own HTTP endpoint (http.listen, config line 3)" {
			t.Errorf("deny %v from %q", o.HTTP.DenyLoopbackPorts, o.HTTP.DenyLoopbackSource)
		}
		o = parse(t, "http:\n  listen: 127.0.0.1:9799\n  auth:\n    bearer: { token_env: T }\n")
		if o.HTTP.DenyLoopbackPorts != nil {
			t.Errorf("with auth: deny %v, want none (scripts cannot read the token)", o.HTTP.DenyLoopbackPorts)
		}
	})
	t.Run("empty list denies all", func(t *testing.T) {
		if o := parse(t, "http_client:\n  allow_hosts: []\n"); o.HTTP.AllowHosts == nil {
			t.Error("allow_hosts: [] became nil (any host)")
		}
	})
}

// TestHTTPClientCommands runs the binary: exec reaches allowed hosts with
// mailbot's User-Agent and is denied others, a dry run sends GET but not
// POST, and check refuses requests made at load time.
func TestHTTPClientCommands(t *testing.T) {
	t.Parallel()
	var gets, posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		} else {
			gets.Add(1)
		}
		w.Header().Set("X-UA", r.UserAgent())
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(host)

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), "scripts_dir: scripts\nstate_dir: state\nhttp_client:\n  allow_hosts: [\""+host+"\"]\n")
	writeFile(t, filepath.Join(dir, "tools", "get.lua"), `local r = require("http").get(arg[1])
print(r.status, r.body, r.headers["x-ua"])
`)
	writeFile(t, filepath.Join(dir, "tools", "post.lua"), `local r = require("http").post(arg[1], { body = "x" })
print(r.status, tostring(r.dry_run))
`)
	writeFile(t, filepath.Join(dir, "scripts", "ok.lua"), "mailbot.on_start(function() end)\n")

	r := mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "tools/get.lua", srv.URL+"/a")
	if r.code != 0 || !strings.Contains(r.stdout, "200\thello\tmailbot/") {
		t.Errorf("exec GET: %v", r)
	}
	r = mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "tools/get.lua", "http://localhost:"+port+"/a?token=t0k")
	if r.code == 0 || !strings.Contains(r.stderr, "denied: GET http://localhost:"+port+"/a: host localhost:"+port+" is not in http_client.allow_hosts (config line 4)") {
		t.Errorf("exec GET of a host not allowed: %v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "t0k") {
		t.Errorf("the query was shown: %v", r)
	}

	before := gets.Load()
	r = mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "--dry-run", filepath.Join(dir, "dry"), "tools/get.lua", srv.URL+"/b")
	if r.code != 0 || gets.Load() != before+1 {
		t.Errorf("dry-run GET was not sent: %v", r)
	}
	r = mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "--dry-run", filepath.Join(dir, "dry"), "tools/post.lua", srv.URL+"/hook")
	if r.code != 0 || !strings.Contains(r.stdout, "0\ttrue") || !strings.Contains(r.stderr, "dry run: not sent: POST "+srv.URL+"/hook") {
		t.Errorf("dry-run POST: %v", r)
	}
	if posts.Load() != 0 {
		t.Errorf("the server got %d POSTs in a dry run", posts.Load())
	}

	writeFile(t, filepath.Join(dir, "scripts", "eager.lua"), `require("http").get("`+srv.URL+`/load")
mailbot.on_start(function() end)
`)
	before = gets.Load()
	r = mailbot(t, dir, nil, "check", "-c", "mailbot.yaml")
	if r.code != 1 || !strings.Contains(r.stdout, "scripts/eager.lua:1: denied: GET "+srv.URL+"/load: host "+host+" is not in the hosts a check may reach") {
		t.Errorf("check of a request at load time: %v", r)
	}
	if gets.Load() != before {
		t.Errorf("check made %d requests", gets.Load()-before)
	}
}
