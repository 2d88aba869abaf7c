package luabind

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// echoed is what the echo server reports about a request.
type echoed struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	CT     string `json:"ct"`
	Body   string `json:"body"`
	XTest  string `json:"x_test"`
	UA     string `json:"ua"`
	Auth   string `json:"auth"`
	Ref    string `json:"ref"`
}

// echoHandler answers every request with a JSON description of it.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Add("X-Multi", "a")
	w.Header().Add("X-Multi", "b")
	json.NewEncoder(w).Encode(echoed{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		CT: r.Header.Get("Content-Type"), Body: string(b), XTest: r.Header.Get("X-Test"),
		UA: r.Header.Get("User-Agent"), Auth: r.Header.Get("Authorization"), Ref: r.Header.Get("Referer")})
}

// httpErr is a raised http error table, as Go sees it.
type httpErr struct{ Kind, Message, URL, String string }

// runHTTP runs src (which may use the global URL) in a fresh state and
// returns its first result as a string, or the error it raised.
func runHTTP(t *testing.T, opts Options, base, src string) (string, *httpErr) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	L := newTestState(t, opts)
	L.SetGlobal("URL", lua.LString(base))
	ctx, stop := StartRun(context.Background(), L)
	defer stop()
	_ = ctx
	out, err := evalLua(L, `local http = require("http"); local json = require("json"); `+src)
	if err != nil {
		var ae *lua.ApiError
		if !errors.As(err, &ae) {
			t.Fatalf("raised %v, want an error table", err)
		}
		et, ok := ae.Object.(*lua.LTable)
		if !ok {
			t.Fatalf("raised %v, want an error table", err)
		}
		he := &httpErr{Kind: et.RawGetString("kind").String(), Message: et.RawGetString("message").String(),
			URL: lua.LVAsString(et.RawGetString("url")), String: L.ToStringMeta(et).String()}
		return "", he
	}
	if len(out) == 0 {
		return "", nil
	}
	return L.ToStringMeta(out[0]).String(), nil
}

// mustRun is runHTTP that fails the test on an error.
func mustRun(t *testing.T, opts Options, base, src string) string {
	t.Helper()
	s, e := runHTTP(t, opts, base, src)
	if e != nil {
		t.Fatalf("raised %+v", *e)
	}
	return s
}

// mustFail is runHTTP that wants an error of kind.
func mustFail(t *testing.T, opts Options, base, src, kind string) *httpErr {
	t.Helper()
	s, e := runHTTP(t, opts, base, src)
	if e == nil {
		t.Fatalf("returned %q, want a %s error", s, kind)
	}
	if e.Kind != kind {
		t.Fatalf("raised kind %q (%s), want %q", e.Kind, e.Message, kind)
	}
	if e.String != e.Kind+": "+e.Message {
		t.Errorf("tostring(err) = %q, want %q", e.String, e.Kind+": "+e.Message)
	}
	return e
}

func TestHTTPRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(echoHandler))
	t.Cleanup(srv.Close)
	tests := []struct {
		name string
		src  string
		ua   string
		want echoed
	}{
		{"get", `return http.get(URL .. "/a/b").body`, "",
			echoed{Method: "GET", Path: "/a/b", UA: "mailbot"}},
		{"get with query and headers", `return http.get(URL .. "/q?x=1", {
				query = { b = "2 3", a = { "x", 4 } }, headers = { ["X-Test"] = "yes" } }).body`, "",
			echoed{Method: "GET", Path: "/q", Query: "a=x&a=4&b=2+3&x=1", XTest: "yes", UA: "mailbot"}},
		{"post json", `return http.post(URL .. "/j", { json = { n = 1, list = { "a" } } }).body`, "",
			echoed{Method: "POST", Path: "/j", CT: "application/json", Body: `{"list":["a"],"n":1}`, UA: "mailbot"}},
		{"post form", `return http.post(URL .. "/f", { form = { b = "x y", a = true } }).body`, "",
			echoed{Method: "POST", Path: "/f", CT: "application/x-www-form-urlencoded", Body: "a=true&b=x+y", UA: "mailbot"}},
		{"request with body and content type", `return http.request{ method = "put", url = URL .. "/p",
				body = "raw", headers = { ["Content-Type"] = "text/plain", ["User-Agent"] = "report/1" } }.body`, "",
			echoed{Method: "PUT", Path: "/p", CT: "text/plain", Body: "raw", UA: "report/1"}},
		{"configured user agent", `return http.request{ url = URL }.body`, "mailbot/1.2.3",
			echoed{Method: "GET", Path: "/", UA: "mailbot/1.2.3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustRun(t, Options{HTTP: HTTPOptions{UserAgent: tc.ua}}, srv.URL, tc.src)
			var got echoed
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("decode %q: %v", out, err)
			}
			if got != tc.want {
				t.Errorf("server saw %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestHTTPResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.Header().Add("X-Multi", "a")
			w.Header().Add("X-Multi", "b")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "no such report")
			return
		}
		echoHandler(w, r)
	}))
	t.Cleanup(srv.Close)
	tests := []struct{ name, src, want string }{
		{"non-2xx is a result", `local r = http.get(URL .. "/missing")
			return table.concat({ r.status, tostring(r.ok), r.headers["x-multi"], r.body }, "|")`,
			"404|false|a, b|no such report"},
		{"2xx", `local r = http.get(URL .. "/x")
			return table.concat({ r.status, tostring(r.ok), r.headers["content-type"] }, "|")`,
			"200|true|application/json"},
		{"json method", `local r = http.get(URL .. "/x"); local v = r:json()
			return v.method .. " " .. v.path .. " " .. tostring(v.query == "")`, "GET /x true"},
		{"json null is the json module's", `local r = { body = '{"a": null}' }
			setmetatable(r, getmetatable(http.get(URL)))
			return tostring(r:json().a == json.null)`, "true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustRun(t, Options{}, srv.URL, tc.src); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("json decode error", func(t *testing.T) {
		got := mustRun(t, Options{}, srv.URL, `local ok, err = pcall(function() return http.get(URL .. "/missing"):json() end)
			return tostring(ok) .. " " .. tostring(err)`)
		if !strings.HasPrefix(got, "false ") || !strings.Contains(got, "json.decode: line 1, column 2") {
			t.Errorf("got %q, want a json.decode error", got)
		}
	})
}

// redirector serves /r/N, redirecting to /r/N-1 down to /r/0, which
// answers "done"; /to?u=URL redirects to URL.
func redirector(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/to" {
		http.Redirect(w, r, r.URL.Query().Get("u"), http.StatusFound)
		return
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/r/"))
	if n == 0 {
		io.WriteString(w, "done")
		return
	}
	http.Redirect(w, r, "/r/"+strconv.Itoa(n-1), http.StatusFound)
}

func TestHTTPRedirects(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(redirector))
	t.Cleanup(plain.Close)
	other := httptest.NewServer(http.HandlerFunc(echoHandler))
	t.Cleanup(other.Close)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(redirector))
	t.Cleanup(tlsSrv.Close)
	plainHost := strings.TrimPrefix(plain.URL, "http://")

	t.Run("10 redirects are followed", func(t *testing.T) {
		if got := mustRun(t, Options{}, plain.URL, `return http.get(URL .. "/r/10").body`); got != "done" {
			t.Errorf("body %q, want done", got)
		}
	})
	t.Run("11 are not", func(t *testing.T) {
		e := mustFail(t, Options{}, plain.URL, `return http.get(URL .. "/r/11").body`, "redirect")
		if !strings.Contains(e.Message, "stopped after 10 redirects") {
			t.Errorf("message %q", e.Message)
		}
	})
	t.Run("https to http is refused", func(t *testing.T) {
		src := `return http.get(URL .. "/to?u=` + url.QueryEscape(other.URL+"/x") + `", { insecure_skip_verify = true }).body`
		e := mustFail(t, Options{}, tlsSrv.URL, src, "redirect")
		if !strings.Contains(e.Message, "from https to http") {
			t.Errorf("message %q", e.Message)
		}
	})
	t.Run("allow_hosts is checked on each hop", func(t *testing.T) {
		opts := Options{HTTP: HTTPOptions{AllowHosts: []string{plainHost}, AllowHostsSource: "http_client.allow_hosts (config line 7)"}}
		if got := mustRun(t, opts, plain.URL, `return http.get(URL .. "/r/2").body`); got != "done" {
			t.Errorf("allowed host: body %q", got)
		}
		e := mustFail(t, opts, plain.URL, `return http.get(URL .. "/to?u=`+url.QueryEscape(other.URL+"/x?secret=1")+`").body`, "denied")
		host := strings.TrimPrefix(other.URL, "http://")
		for _, want := range []string{"host " + host + " is not in http_client.allow_hosts (config line 7)", "(redirect 1 from " + plain.URL + "/to)"} {
			if !strings.Contains(e.Message, want) {
				t.Errorf("message %q lacks %q", e.Message, want)
			}
		}
		if strings.Contains(e.Message, "secret") || e.URL != other.URL+"/x" {
			t.Errorf("message %q / url %q show the query", e.Message, e.URL)
		}
	})
	t.Run("credentials stay with their host", func(t *testing.T) {
		src := `return http.get(URL .. "/to?u=%s", { headers = { Authorization = "Bearer t0k" } }):json().auth`
		if got := mustRun(t, Options{}, plain.URL, fmt.Sprintf(src, url.QueryEscape(other.URL+"/x"))); got != "" {
			t.Errorf("cross-host redirect sent Authorization %q", got)
		}
		// Same host, same port: kept.
		same := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/to" {
				http.Redirect(w, r, "/echo", http.StatusFound)
				return
			}
			echoHandler(w, r)
		}))
		t.Cleanup(same.Close)
		if got := mustRun(t, Options{}, same.URL, `return http.get(URL .. "/to", { headers = { Authorization = "Bearer t0k" } }):json().auth`); got != "Bearer t0k" {
			t.Errorf("same-host redirect sent Authorization %q, want it kept", got)
		}
		if got := mustRun(t, Options{}, same.URL, `return http.get(URL .. "/to?api_key=k3y"):json().ref`); got != "" {
			t.Errorf("redirect sent Referer %q", got)
		}
	})
}

func TestHTTPDenied(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(echoHandler))
	t.Cleanup(srv.Close)
	var hits atomic.Int32
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); echoHandler(w, r) })
	opts := Options{HTTP: HTTPOptions{AllowHosts: []string{"*.example.com", "127.0.0.1:1"}, AllowHostsSource: "http_client.allow_hosts (config line 3)"}}
	e := mustFail(t, opts, srv.URL, `return http.get(URL .. "/x?token=abc").body`, "denied")
	if want := "GET " + srv.URL + "/x: host " + strings.TrimPrefix(srv.URL, "http://") + " is not in http_client.allow_hosts (config line 3)"; e.Message != want {
		t.Errorf("message %q, want %q", e.Message, want)
	}
	if hits.Load() != 0 {
		t.Errorf("the server got %d requests", hits.Load())
	}
}

func TestHostAllowed(t *testing.T) {
	patterns := []string{"api.example.com", "*.corp.example", "static.example.org:8443", "[::1]:9000", "10.0.0.1"}
	tests := []struct {
		url  string
		want bool
	}{
		{"https://api.example.com/x", true},
		{"http://API.Example.com:8080/x", true},
		{"https://api.example.com./x", true},
		{"https://www.example.com/x", false},
		{"https://a.corp.example/x", true},
		{"https://a.b.corp.example/x", true},
		{"https://corp.example/x", false},
		{"https://evilcorp.example/x", false},
		{"https://static.example.org:8443/", true},
		{"https://static.example.org/", false},
		{"http://[::1]:9000/", true},
		{"http://[0:0::1]:9000/", true},
		{"http://[::1]:9001/", false},
		{"http://10.0.0.1:5/", true},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostAllowed(patterns, u); got != tc.want {
			t.Errorf("hostAllowed(%s) = %v, want %v", tc.url, got, tc.want)
		}
	}
}

func TestCheckHostPattern(t *testing.T) {
	for _, p := range []string{"api.example.com", "*.example.com", "example.com:8443", "127.0.0.1", "127.0.0.1:80", "[::1]:9000", "::1", "[::1]", "my_host"} {
		if err := CheckHostPattern(p); err != nil {
			t.Errorf("CheckHostPattern(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "*", "*.", "a.*.com", "exa mple.com", "example.com:0", "example.com:99999", "example.com:x", "*.10.0.0.1", "https://example.com", "a..b"} {
		if err := CheckHostPattern(p); err == nil {
			t.Errorf("CheckHostPattern(%q) = nil, want an error", p)
		}
	}
}

func TestHTTPSizeLimit(t *testing.T) {
	// The server streams up to 1 GiB and counts what it could write: the
	// client must stop reading soon after the limit, not take it all.
	var written atomic.Int64
	done := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		if r.URL.Path == "/declared" {
			w.Header().Set("Content-Length", strconv.Itoa(4<<20))
			w.WriteHeader(http.StatusOK)
			return
		}
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for written.Load() < 1<<30 {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name, src string
		opts      Options
		want      []string
	}{
		{"max_bytes", `return http.get(URL .. "/stream", { max_bytes = 1048576 }).body`, Options{},
			[]string{"exceeds the limit of 1 MiB (max_bytes;", "max_bytes = <bytes>", "http_client.max_bytes"}},
		{"configured default", `return http.get(URL .. "/stream").body`, Options{HTTP: HTTPOptions{MaxBytes: 2 << 20, MaxBytesSource: "http_client.max_bytes"}},
			[]string{"exceeds the limit of 2 MiB (http_client.max_bytes;"}},
		{"memory limit caps it", `return http.get(URL .. "/stream", { max_bytes = 1e9 }).body`, Options{MemoryLimit: 3 << 20},
			[]string{"exceeds the limit of 3 MiB (limits.memory;", "raise limits.memory"}},
		{"declared length", `return http.get(URL .. "/declared", { max_bytes = 1048576 }).body`, Options{},
			[]string{"body of 4 MiB exceeds the limit of 1 MiB"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			written.Store(0)
			e := mustFail(t, tc.opts, srv.URL, tc.src, "too_large")
			for _, w := range tc.want {
				if !strings.Contains(e.Message, w) {
					t.Errorf("message %q lacks %q", e.Message, w)
				}
			}
			<-done // the handler saw the connection close
			if n := written.Load(); n > 64<<20 {
				t.Errorf("the server wrote %d bytes before the client gave up", n)
			}
		})
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close

	t.Run("per call", func(t *testing.T) {
		e := mustFail(t, Options{}, srv.URL, `return http.get(URL .. "/slow?k=v", { timeout = 0.2 })`, "timeout")
		if want := "GET " + srv.URL + "/slow: no complete response within 200ms (timeout)"; e.Message != want {
			t.Errorf("message %q, want %q", e.Message, want)
		}
	})
	t.Run("run timeout", func(t *testing.T) {
		L := newTestState(t, Options{Logger: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, stop := StartRun(ctx, L)
		defer stop()
		start := time.Now()
		_, err := evalLua(L, `return require("http").get("`+srv.URL+`")`)
		var ae *lua.ApiError
		if !errors.As(err, &ae) {
			t.Fatalf("err %v, want an error table", err)
		}
		et := ae.Object.(*lua.LTable)
		if k := et.RawGetString("kind").String(); k != "timeout" || !strings.Contains(et.RawGetString("message").String(), "the run ended") {
			t.Errorf("raised %s: %s, want a timeout that names the run", k, et.RawGetString("message"))
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %v: the run's deadline did not stop the call", took)
		}
	})
}

// writeCert writes the PEM certificate of srv to dir/ca.pem.
func writeCert(t *testing.T, srv *httptest.Server, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTPTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(echoHandler))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeCert(t, srv, dir)
	opts := Options{BaseDir: dir, ScriptsDir: dir}
	tests := []struct{ name, src, kind string }{
		{"verified by default", `return http.get(URL).status`, "tls"},
		{"ca_file", `return http.get(URL, { ca_file = "ca.pem" }).status`, ""},
		{"insecure_skip_verify", `return http.get(URL, { insecure_skip_verify = true }).status`, ""},
		{"ca_file without a certificate", `return http.get(URL, { ca_file = "empty.pem" }).status`, "invalid"},
		{"ca_file missing", `return http.get(URL, { ca_file = "nope.pem" }).status`, "invalid"},
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.pem"), []byte("not a cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kind != "" {
				mustFail(t, opts, srv.URL, tc.src, tc.kind)
				return
			}
			if got := mustRun(t, opts, srv.URL, tc.src); got != "200" {
				t.Errorf("status %q", got)
			}
		})
	}
	t.Run("configured roots", func(t *testing.T) {
		o := opts
		o.HTTP.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		if got := mustRun(t, o, srv.URL, `return http.get(URL).status`); got != "200" {
			t.Errorf("status %q", got)
		}
	})
}

func TestHTTPConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := mustFail(t, Options{}, "http://user:hunter2@"+addr, `return http.get(URL .. "/p?api_key=k3y")`, "connect")
	for _, s := range []string{e.Message, e.URL, e.String} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "k3y") || strings.Contains(s, "user") {
			t.Errorf("%q shows the URL's credentials", s)
		}
	}
	if e.URL != "http://"+addr+"/p" {
		t.Errorf("url %q, want http://%s/p", e.URL, addr)
	}
}

func TestHTTPInvalid(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"CR LF in a header value", `http.get(URL, { headers = { ["X-A"] = "s3cret\r\nX-Injected: 1" } })`, "header X-A: value contains CR, LF or NUL"},
		{"CR LF in a header name", `http.get(URL, { headers = { ["X-A\r\nB"] = "v" } })`, "invalid header name"},
		{"CR LF in the method", `http.request{ method = "GET\r\nX", url = URL }`, "invalid method"},
		{"space in the method", `http.request{ method = "GE T", url = URL }`, "invalid method"},
		{"unknown option", `http.get(URL, { tmeout = 1 })`, `unknown option "tmeout"`},
		{"method on get", `http.get(URL, { method = "POST" })`, `unknown option "method"`},
		{"two bodies", `http.post(URL, { body = "a", json = {} })`, "set only one of body, json and form"},
		{"scheme", `http.get("ftp://example.com/x")`, "want an http:// or https:// URL"},
		{"no host", `http.get("http:///x")`, "has no host"},
		{"no url", `http.request{ method = "GET" }`, "url is required"},
		{"bad timeout", `http.get(URL, { timeout = -1 })`, "timeout must be a positive number"},
		{"bad max_bytes", `http.get(URL, { max_bytes = 1.5 })`, "max_bytes must be a positive whole number"},
		{"json not encodable", `http.post(URL, { json = { f = print } })`, "json:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustFail(t, Options{}, "http://127.0.0.1:1", tc.src, "invalid")
			if !strings.Contains(e.Message, tc.want) {
				t.Errorf("message %q lacks %q", e.Message, tc.want)
			}
			if strings.Contains(e.Message, "s3cret") {
				t.Errorf("message %q shows a header value", e.Message)
			}
		})
	}
}

func TestHTTPDryRun(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		echoHandler(w, r)
	}))
	t.Cleanup(srv.Close)
	var logs bytes.Buffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), ScriptName: "report.lua", SMTP: SMTPOptions{DryRun: &DryRun{}}}

	got := mustRun(t, opts, srv.URL, `local r = http.post(URL .. "/hook?token=abc", { json = { a = 1 }, headers = { Authorization = "Bearer s3cret" } })
		return table.concat({ r.status, tostring(r.ok), tostring(r.dry_run), r.body, tostring(next(r.headers)) }, "|")`)
	if got != "0|false|true||nil" {
		t.Errorf("dry-run POST returned %q", got)
	}
	if hits.Load() != 0 {
		t.Errorf("the server got %d requests in a dry run", hits.Load())
	}
	logged := logs.String()
	if want := "dry run: not sent: POST " + srv.URL + "/hook"; !strings.Contains(logged, want) || !strings.Contains(logged, "script=report.lua") {
		t.Errorf("log %q lacks %q", logged, want)
	}
	if strings.Contains(logged, "abc") || strings.Contains(logged, "s3cret") {
		t.Errorf("log %q shows the query or a header", logged)
	}
	if got := mustRun(t, opts, srv.URL, `return http.get(URL).status`); got != "200" || hits.Load() != 1 {
		t.Errorf("dry-run GET: status %q, %d requests; want it sent", got, hits.Load())
	}
	// Denied hosts are still reported in a dry run.
	opts.HTTP.AllowHosts = []string{"example.com"}
	mustFail(t, opts, srv.URL, `return http.post(URL, { body = "x" })`, "denied")
}

func TestHTTPDebugLogRedacts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(echoHandler))
	t.Cleanup(srv.Close)
	var logs bytes.Buffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	mustRun(t, opts, srv.URL, `return http.get(URL .. "/r?token=abc", { headers = { Authorization = "Bearer s3cret" } }).status`)
	logged := logs.String()
	if !strings.Contains(logged, "url="+srv.URL+"/r") || !strings.Contains(logged, "status=200") {
		t.Errorf("log %q lacks the request", logged)
	}
	if strings.Contains(logged, "abc") || strings.Contains(logged, "s3cret") {
		t.Errorf("log %q shows the query or a header", logged)
	}
}

// docsAPI plays the example APIs of docs/lua-api.md's http section.
func docsAPI(w http.ResponseWriter, r *http.Request) {
	switch r.Host + r.URL.Path {
	case "api.example.com/v1/orders":
		if r.URL.Query().Get("status") != "open" {
			http.Error(w, "status wanted", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"items": [{"id": 1, "total": 12.5}, {"id": 2, "total": 30}]}`)
	case "api.example.com/v1/export.csv":
		w.Header().Set("Content-Type", "text/csv")
		for range 200 {
			io.WriteString(w, "id,name,total,created_at\n")
		}
	case "hooks.example.com/services/nightly":
		var v map[string]any
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer docs-hook-token" ||
			json.NewDecoder(r.Body).Decode(&v) != nil || v["text"] == nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case "lists.example.com/subscribe":
		if r.ParseForm() != nil || r.PostForm.Get("list") != "nightly" {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		http.Error(w, "already subscribed", http.StatusConflict)
	default:
		http.NotFound(w, r)
	}
}

// docsCert returns a certificate for example.com and its subdomains,
// and a pool that trusts it.
func docsCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.com"},
		DNSNames: []string{"example.com", "*.example.com"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestDocsHTTPBlocks runs the blocks after docsHTTPMarker with every
// connection going to docsAPI, over TLS verified against docsCert, and
// http_client.allow_hosts set to *.example.com.
func TestDocsHTTPBlocks(t *testing.T) {
	cert, pool := docsCert(t)
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		docsAPI(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	for _, b := range blocksByMode(t, readDocBlocks(t), "http", 4) {
		t.Run("line_"+strconv.Itoa(b.line), func(t *testing.T) {
			dir := t.TempDir()
			L := newTestState(t, Options{ScriptsDir: dir, BaseDir: dir, ScriptName: "docs.lua",
				Logger: slog.New(slog.DiscardHandler),
				Getenv: func(k string) (string, bool) {
					if k == "HOOK_TOKEN" {
						return "docs-hook-token", true
					}
					return "", false
				},
				HTTP: HTTPOptions{
					AllowHosts: []string{"*.example.com"}, AllowHostsSource: "http_client.allow_hosts (config line 12)",
					RootCAs: pool,
					DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
						return (&net.Dialer{}).DialContext(ctx, network, addr)
					},
				}})
			runDocBlock(t, L, b)
		})
	}
	if hits.Load() == 0 {
		t.Error("no example reached the server")
	}
}

func TestHTTPDenyLoopbackPort(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	other := httptest.NewServer(http.HandlerFunc(echoHandler))
	t.Cleanup(other.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	opts := Options{HTTP: HTTPOptions{DenyLoopbackPorts: []int{n}, DenyLoopbackSource: "mailbot's own HTTP endpoint (http.listen, config line 9)"}}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			e := mustFail(t, opts, "http://"+host+":"+port, `return http.get(URL .. "/api/csrf?x=1")`, "denied")
			if !strings.HasPrefix(e.Message, "GET http://"+host+":"+port+"/api/csrf: connection to ") ||
				!strings.HasSuffix(e.Message, "refused: it is mailbot's own HTTP endpoint (http.listen, config line 9)") {
				t.Errorf("message %q", e.Message)
			}
		})
	}
	// A redirect does not lead around it either.
	redir := httptest.NewServer(http.HandlerFunc(redirector))
	t.Cleanup(redir.Close)
	mustFail(t, opts, redir.URL, `return http.get(URL .. "/to?u=`+url.QueryEscape(srv.URL+"/api/fire")+`")`, "denied")
	if hits.Load() != 0 {
		t.Errorf("the endpoint got %d requests", hits.Load())
	}
	if got := mustRun(t, opts, other.URL, `return http.get(URL).status`); got != "200" {
		t.Errorf("another loopback port: status %q", got)
	}
}
