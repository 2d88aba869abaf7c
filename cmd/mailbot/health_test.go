package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "wild.yaml"), "scripts_dir: s\nhttp:\n  listen: 0.0.0.0:"+port+"\n")
	writeFile(t, filepath.Join(dir, "nohttp.yaml"), "scripts_dir: s\n")
	for _, tc := range []struct {
		name   string
		status int
		env    map[string]string
		args   []string
		want   int
		stderr string
	}{
		{"url ok", 200, nil, []string{"--url", srv.URL + "/healthz"}, exitOK, ""},
		{"url unhealthy", 503, nil, []string{"--url", srv.URL + "/healthz"}, exitFailure, "503"},
		{"env url", 200, map[string]string{envHealthURL: srv.URL + "/healthz"}, nil, exitOK, ""},
		{"config wildcard asked on loopback", 200, nil, []string{"-c", filepath.Join(dir, "wild.yaml")}, exitOK, ""},
		{"config from MAILBOT_CONFIG", 200, map[string]string{envConfig: filepath.Join(dir, "wild.yaml")}, nil, exitOK, ""},
		{"no http section", 200, nil, []string{"-c", filepath.Join(dir, "nohttp.yaml")}, exitFailure, "http.listen is not set"},
		{"nothing listening", 200, nil, []string{"--url", "http://" + closedPort(t) + "/healthz"}, exitFailure, "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status = tc.status
			var out, errb bytes.Buffer
			m := &Main{Stdout: &out, Stderr: &errb, LookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			if got := m.Run(context.Background(), append([]string{"health"}, tc.args...)); got != tc.want {
				t.Fatalf("exit %d, want %d; stderr %s", got, tc.want, errb.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.stderr)
			}
		})
	}
}
