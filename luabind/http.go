package luabind

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Defaults of the http module when neither the call nor HTTPOptions set them.
const (
	// DefaultHTTPTimeout bounds one call: connecting, sending, the
	// response and reading its body.
	DefaultHTTPTimeout = 30 * time.Second
	// DefaultHTTPMaxBytes bounds a response body: 32 MiB.
	DefaultHTTPMaxBytes int64 = 32 << 20
	// maxHTTPRedirects is how many redirects a call follows.
	maxHTTPRedirects = 10
)

// HTTPOptions configures the Lua http module. The zero value is usable: any
// host, the system's certificate roots, DefaultHTTPTimeout and
// DefaultHTTPMaxBytes.
type HTTPOptions struct {
	// AllowHosts, when not nil, lists the hosts requests (and each
	// redirect hop) may go to: "api.example.com" (any port),
	// "*.example.com" (any name below example.com, not example.com
	// itself) or either with ":port" (that port only). See
	// CheckHostPattern.
	AllowHosts []string
	// AllowHostsSource names where AllowHosts come from in "denied"
	// errors, such as "http_client.allow_hosts (config line 12)".
	AllowHostsSource string
	// RootCAs replaces the system roots for calls without their own
	// ca_file; nil: system roots.
	RootCAs *x509.CertPool
	// MaxBytes is the default response body limit; 0: DefaultHTTPMaxBytes.
	// MaxBytesSource names it in "too_large" errors.
	MaxBytes       int64
	MaxBytesSource string
	// Timeout is the default per-call timeout; 0: DefaultHTTPTimeout.
	Timeout time.Duration
	// UserAgent is sent when a call sets no User-Agent; default "mailbot".
	UserAgent string
	// Logger receives the module's records; default Options.Logger.
	Logger *slog.Logger
	// DenyLoopbackPorts are ports on loopback addresses that requests may
	// not connect to, whatever name the URL uses: mailbot's own
	// operations endpoint when it has no auth, which a script could
	// otherwise use to fire triggers or delete dead letters.
	// DenyLoopbackSource names it in "denied" errors.
	DenyLoopbackPorts  []int
	DenyLoopbackSource string
	// DialContext overrides how connections are made (tests, the docs'
	// examples), proxies included; nil: a net.Dialer, and the proxy of
	// HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

const (
	httpErrorTypeName    = "mailbot.http.error"
	httpResponseTypeName = "mailbot.http.response"
)

// httpError is a failed http call: kind is one of the documented error
// kinds, url the request's URL without credentials or query.
type httpError struct {
	kind string
	url  string
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// httpCall is one request, validated and ready to send.
type httpCall struct {
	fn       string // "http.get", for messages
	method   string
	u        *url.URL
	header   http.Header
	body     []byte
	hasBody  bool
	timeout  time.Duration
	maxBytes int64
	// maxSource says which setting set maxBytes, for the too_large hint.
	maxSource string
	rootCAs   *x509.CertPool
	insecure  bool
}

// httpOptionKeys are the keys http.request accepts; get and post take
// the same keys in their options table, minus method and url.
var httpOptionKeys = map[string]bool{
	"method": true, "url": true, "headers": true, "query": true, "body": true, "json": true,
	"form": true, "timeout": true, "max_bytes": true, "ca_file": true, "insecure_skip_verify": true,
}

// openHTTP returns the loader of the http module:
//
//	http.get(url [, opts]) -> resp
//	http.post(url, opts) -> resp
//	http.request{ method=, url=, headers=, query=, body= | json= | form=,
//	              timeout=, max_bytes=, ca_file=, insecure_skip_verify= } -> resp
//	resp.status, resp.ok, resp.headers, resp.body, resp:json()
//
// A response with any status is a result, not an error; network failures,
// refused hosts and bad arguments raise {kind, message, url}.
func openHTTP(o *Options) lua.LGFunction {
	return func(L *lua.LState) int {
		emt := L.NewTypeMetatable(httpErrorTypeName)
		L.SetField(emt, "__tostring", L.NewFunction(func(L *lua.LState) int {
			t := L.CheckTable(1)
			L.Push(lua.LString(L.GetField(t, "kind").String() + ": " + L.GetField(t, "message").String()))
			return 1
		}))
		rmt := L.NewTypeMetatable(httpResponseTypeName)
		L.SetField(rmt, "__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{"json": httpResponseJSON}))
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"get": func(L *lua.LState) int {
				return httpDo(L, o, parseHTTPCall(L, o, "http.get", "GET", true))
			},
			"post": func(L *lua.LState) int {
				return httpDo(L, o, parseHTTPCall(L, o, "http.post", "POST", true))
			},
			"request": func(L *lua.LState) int {
				return httpDo(L, o, parseHTTPCall(L, o, "http.request", "", false))
			},
		})
		L.Push(mod)
		return 1
	}
}

// raiseHTTP raises e as a Lua error table {kind, message, url, where}.
func raiseHTTP(L *lua.LState, e *httpError) {
	t := L.CreateTable(0, 4)
	t.RawSetString("kind", lua.LString(e.kind))
	t.RawSetString("message", lua.LString(e.msg))
	if e.url != "" {
		t.RawSetString("url", lua.LString(e.url))
	}
	if where := luaWhere(L); where != "" {
		t.RawSetString("where", lua.LString(where))
	}
	if mt, ok := L.GetTypeMetatable(httpErrorTypeName).(*lua.LTable); ok {
		L.SetMetatable(t, mt)
	}
	L.Error(t, 0)
}

// invalid raises an "invalid" error for a bad argument of fn.
func invalid(L *lua.LState, fn, format string, args ...any) {
	raiseHTTP(L, &httpError{kind: "invalid", msg: fn + ": " + fmt.Sprintf(format, args...)})
}

// redactURL returns u as it may be logged: scheme, host and path, without
// user info, query or fragment, which often carry credentials.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// parseHTTPCall reads the arguments of get/post (url, opts) or request
// (one table), raising "invalid" errors.
func parseHTTPCall(L *lua.LState, o *Options, fn, method string, urlArg bool) *httpCall {
	var (
		rawURL string
		t      *lua.LTable
	)
	if urlArg {
		s, ok := L.Get(1).(lua.LString)
		if !ok {
			invalid(L, fn, "want a URL string as the first argument, got %s", L.Get(1).Type())
		}
		rawURL = string(s)
		switch v := L.Get(2).(type) {
		case *lua.LTable:
			t = v
		case *lua.LNilType:
			t = L.NewTable()
		default:
			invalid(L, fn, "want an options table as the second argument, got %s", v.Type())
		}
	} else {
		v, ok := L.Get(1).(*lua.LTable)
		if !ok {
			invalid(L, fn, "want a table { method =, url =, ... }, got %s", L.Get(1).Type())
		}
		t = v
	}
	var unknown []string
	t.ForEach(func(k, _ lua.LValue) {
		ks, ok := k.(lua.LString)
		if !ok || !httpOptionKeys[string(ks)] || (urlArg && (ks == "method" || ks == "url")) {
			unknown = append(unknown, k.String())
		}
	})
	if len(unknown) > 0 {
		sort.Strings(unknown)
		known := "headers, query, body, json, form, timeout, max_bytes, ca_file, insecure_skip_verify"
		if !urlArg {
			known = "method, url, " + known
		}
		invalid(L, fn, "unknown option %q (known: %s)", unknown[0], known)
	}
	str := func(key string) (string, bool) {
		switch v := t.RawGetString(key).(type) {
		case *lua.LNilType:
			return "", false
		case lua.LString:
			return string(v), true
		default:
			invalid(L, fn, "%s must be a string, got %s", key, v.Type())
		}
		return "", false
	}
	if !urlArg {
		s, ok := str("url")
		if !ok {
			invalid(L, fn, "url is required")
		}
		rawURL = s
		method = "GET"
		if m, ok := str("method"); ok {
			method = strings.ToUpper(m)
		}
	}
	c := &httpCall{fn: fn, method: method, header: http.Header{}}
	if !validToken(method) {
		invalid(L, fn, "invalid method %q", method)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL, credentials included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		invalid(L, fn, "invalid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		invalid(L, fn, "URL %s: want an http:// or https:// URL", redactURL(u))
	}
	if u.Hostname() == "" {
		invalid(L, fn, "URL %s has no host", redactURL(u))
	}
	u.Fragment, u.RawFragment = "", ""
	c.u = u

	if v := t.RawGetString("query"); v != lua.LNil {
		qt, ok := v.(*lua.LTable)
		if !ok {
			invalid(L, fn, "query must be a table, got %s", v.Type())
		}
		q := u.Query()
		for _, kv := range stringPairs(L, fn, "query", qt) {
			q.Add(kv[0], kv[1])
		}
		u.RawQuery = q.Encode()
	}
	if v := t.RawGetString("headers"); v != lua.LNil {
		ht, ok := v.(*lua.LTable)
		if !ok {
			invalid(L, fn, "headers must be a table, got %s", v.Type())
		}
		for _, kv := range stringPairs(L, fn, "headers", ht) {
			if !validToken(kv[0]) {
				invalid(L, fn, "invalid header name %q", kv[0])
			}
			if strings.ContainsAny(kv[1], "\r\n\x00") {
				// The value is not shown: headers carry credentials.
				invalid(L, fn, "header %s: value contains CR, LF or NUL", kv[0])
			}
			c.header.Add(kv[0], kv[1])
		}
	}

	var bodies []string
	for _, k := range []string{"body", "json", "form"} {
		if t.RawGetString(k) != lua.LNil {
			bodies = append(bodies, k)
		}
	}
	if len(bodies) > 1 {
		invalid(L, fn, "set only one of body, json and form (got %s)", strings.Join(bodies, " and "))
	}
	limit := memoryLimit(o)
	if len(bodies) == 1 {
		c.hasBody = true
		switch bodies[0] {
		case "body":
			s, _ := str("body")
			c.body = []byte(s)
		case "json":
			s, err := encodeJSON(L, t.RawGetString("json"), "", limit)
			if err != nil {
				invalid(L, fn, "json: %v", err)
			}
			c.body = []byte(s)
			setDefault(c.header, "Content-Type", "application/json")
		case "form":
			ft, ok := t.RawGetString("form").(*lua.LTable)
			if !ok {
				invalid(L, fn, "form must be a table, got %s", t.RawGetString("form").Type())
			}
			f := url.Values{}
			for _, kv := range stringPairs(L, fn, "form", ft) {
				f.Add(kv[0], kv[1])
			}
			c.body = []byte(f.Encode())
			setDefault(c.header, "Content-Type", "application/x-www-form-urlencoded")
		}
	}

	c.timeout = o.HTTP.Timeout
	if c.timeout <= 0 {
		c.timeout = DefaultHTTPTimeout
	}
	if v := t.RawGetString("timeout"); v != lua.LNil {
		n, ok := v.(lua.LNumber)
		if !ok || n <= 0 {
			invalid(L, fn, "timeout must be a positive number of seconds, got %s", L.ToStringMeta(v))
		}
		c.timeout = time.Duration(float64(n) * float64(time.Second))
	}
	c.maxBytes, c.maxSource = o.HTTP.MaxBytes, o.HTTP.MaxBytesSource
	if c.maxBytes <= 0 {
		c.maxBytes, c.maxSource = DefaultHTTPMaxBytes, "the default"
	}
	if v := t.RawGetString("max_bytes"); v != lua.LNil {
		n, ok := v.(lua.LNumber)
		if !ok || n <= 0 || float64(n) != float64(int64(n)) {
			invalid(L, fn, "max_bytes must be a positive whole number, got %s", L.ToStringMeta(v))
		}
		c.maxBytes, c.maxSource = int64(n), "max_bytes"
	}
	if limit > 0 && c.maxBytes > limit {
		c.maxBytes, c.maxSource = limit, memoryLimitKey
	}
	c.rootCAs = o.HTTP.RootCAs
	if f, ok := str("ca_file"); ok {
		pem, err := stateFiles(L).readPublic(f)
		if err != nil {
			invalid(L, fn, "ca_file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			invalid(L, fn, "ca_file %s holds no PEM certificate", f)
		}
		c.rootCAs = pool
	}
	switch v := t.RawGetString("insecure_skip_verify").(type) {
	case *lua.LNilType:
	case lua.LBool:
		c.insecure = bool(v)
	default:
		invalid(L, fn, "insecure_skip_verify must be a boolean, got %s", v.Type())
	}
	if c.header.Get("User-Agent") == "" {
		ua := o.HTTP.UserAgent
		if ua == "" {
			ua = "mailbot"
		}
		c.header.Set("User-Agent", ua)
	}
	return c
}

// setDefault sets header key unless the script set it.
func setDefault(h http.Header, key, value string) {
	if h.Get(key) == "" {
		h.Set(key, value)
	}
}

// stringPairs flattens a table of name = value (value a string, number,
// boolean or a list of those) into pairs in name order, so requests are
// reproducible.
func stringPairs(L *lua.LState, fn, what string, t *lua.LTable) [][2]string {
	scalar := func(name string, v lua.LValue) string {
		switch x := v.(type) {
		case lua.LString:
			return string(x)
		case lua.LNumber:
			return formatLuaNumber(float64(x))
		case lua.LBool:
			return strconv.FormatBool(bool(x))
		}
		invalid(L, fn, "%s.%s must be a string, number, boolean or a list of them, got %s", what, name, v.Type())
		return ""
	}
	var out [][2]string
	t.ForEach(func(k, v lua.LValue) {
		name, ok := k.(lua.LString)
		if !ok {
			invalid(L, fn, "%s keys must be strings, got %s", what, k.Type())
		}
		if list, ok := v.(*lua.LTable); ok {
			for i := 1; i <= list.Len(); i++ {
				out = append(out, [2]string{string(name), scalar(string(name), list.RawGetInt(i))})
			}
			return
		}
		out = append(out, [2]string{string(name), scalar(string(name), v)})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// validToken reports whether s is an RFC 9110 token: a method or header
// name, which in particular holds no CR, LF or space.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// CheckHostPattern reports whether p is a valid http_client.allow_hosts
// entry: a host name or IP address, optionally "*." in front of a name,
// optionally followed by ":port" (IPv6 addresses in brackets then).
func CheckHostPattern(p string) error {
	if strings.ContainsAny(p, "/@?") {
		return fmt.Errorf("%q: want a host name or address (with an optional :port), not a URL", p)
	}
	host, port, err := splitPattern(p)
	if err != nil {
		return err
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q must be 1-65535", p, port)
		}
	}
	name := strings.TrimPrefix(host, "*.")
	if net.ParseIP(name) != nil {
		if name != host {
			return fmt.Errorf("%q: a wildcard goes with host names, not addresses", p)
		}
		return nil
	}
	if name == "" || strings.Contains(name, "*") {
		return fmt.Errorf("%q: want a host name, *.domain, or either with :port", p)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a valid host name", p)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a valid host name", p)
			}
		}
	}
	return nil
}

// splitPattern splits an allow_hosts entry into lower-case host and port
// ("" when absent).
func splitPattern(p string) (host, port string, err error) {
	p = strings.ToLower(strings.TrimSpace(p))
	switch {
	case strings.HasPrefix(p, "["):
		h, port, err := net.SplitHostPort(p)
		if err != nil {
			if strings.HasSuffix(p, "]") {
				return strings.Trim(p, "[]"), "", nil
			}
			return "", "", fmt.Errorf("%q: %v", p, err)
		}
		return h, port, nil
	case strings.Count(p, ":") == 1:
		h, port, err := net.SplitHostPort(p)
		if err != nil {
			return "", "", fmt.Errorf("%q: %v", p, err)
		}
		return strings.TrimSuffix(h, "."), port, nil
	}
	return strings.TrimSuffix(p, "."), "", nil
}

// hostAllowed reports whether u's host and port match one of patterns.
func hostAllowed(patterns []string, u *url.URL) bool {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	for _, p := range patterns {
		ph, pp, err := splitPattern(p)
		if err != nil || (pp != "" && pp != port) {
			continue
		}
		if suffix, ok := strings.CutPrefix(ph, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
			continue
		}
		if ph == host {
			return true
		}
		// An IPv6 address may be written in several ways.
		if a, b := net.ParseIP(ph), net.ParseIP(host); a != nil && b != nil && a.Equal(b) {
			return true
		}
	}
	return false
}

// checkAllowed returns a "denied" error when u's host is not allowed.
func checkAllowed(o *Options, c *httpCall, u *url.URL, hop string) *httpError {
	if o.HTTP.AllowHosts == nil || hostAllowed(o.HTTP.AllowHosts, u) {
		return nil
	}
	src := o.HTTP.AllowHostsSource
	if src == "" {
		src = "the allowed hosts"
	}
	return &httpError{kind: "denied", url: redactURL(u), msg: fmt.Sprintf("%s %s%s: host %s is not in %s",
		c.method, redactURL(u), hop, u.Host, src)}
}

// httpDo sends c and pushes the response table, or raises.
func httpDo(L *lua.LState, o *Options, c *httpCall) int {
	logger := o.HTTP.Logger
	if logger == nil {
		logger = o.Logger
	}
	shown := redactURL(c.u)
	if e := checkAllowed(o, c, c.u, ""); e != nil {
		raiseHTTP(L, e)
	}
	runCtx := runCtx(L)
	if o.SMTP.DryRun != nil && c.method != http.MethodGet && c.method != http.MethodHead {
		// A dry run reads (reports need their data) but changes nothing.
		logger.InfoContext(runCtx, "dry run: not sent: "+c.method+" "+shown, scriptAttrs(o)...)
		t := L.CreateTable(0, 5)
		t.RawSetString("status", lua.LNumber(0))
		t.RawSetString("ok", lua.LFalse)
		t.RawSetString("headers", L.NewTable())
		t.RawSetString("body", lua.LString(""))
		t.RawSetString("dry_run", lua.LTrue)
		L.SetMetatable(t, L.GetTypeMetatable(httpResponseTypeName))
		L.Push(t)
		return 1
	}

	ctx, cancel := context.WithTimeout(runCtx, c.timeout)
	defer cancel()
	var body io.Reader
	if c.hasBody {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.u.String(), body)
	if err != nil {
		invalid(L, c.fn, "%s %s: %v", c.method, shown, err)
	}
	req.Header = c.header
	tr := httpTransport(o, c)
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			u, prev := next.URL, via[len(via)-1].URL
			hop := fmt.Sprintf(" (redirect %d from %s)", len(via), redactURL(prev))
			if len(via) > maxHTTPRedirects {
				return &httpError{kind: "redirect", url: redactURL(u), msg: fmt.Sprintf(
					"%s %s: stopped after %d redirects", c.method, shown, maxHTTPRedirects)}
			}
			if prev.Scheme == "https" && u.Scheme != "https" {
				return &httpError{kind: "redirect", url: redactURL(u), msg: fmt.Sprintf(
					"%s %s%s: refusing to follow a redirect from https to %s", c.method, redactURL(u), hop, u.Scheme)}
			}
			if e := checkAllowed(o, c, u, hop); e != nil {
				return e
			}
			// Credentials are for the host they were given for. Go's
			// client keeps them for subdomains; mailbot does not.
			if !strings.EqualFold(u.Host, via[0].URL.Host) {
				for _, h := range []string{"Authorization", "Cookie", "Cookie2", "Proxy-Authorization"} {
					next.Header.Del(h)
				}
			}
			// Go adds the previous URL as Referer, query (API keys)
			// included; only a script's own Referer is sent.
			if c.header.Get("Referer") == "" {
				next.Header.Del("Referer")
			}
			return nil
		},
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		raiseHTTP(L, classifyHTTP(L, runCtx, ctx, c, err))
	}
	defer resp.Body.Close()
	final := redactURL(resp.Request.URL)
	tooLarge := func(size string) *httpError {
		how := "raise it with max_bytes = <bytes> in the call or http_client.max_bytes in the config"
		if c.maxSource == memoryLimitKey {
			how = "it is the run's memory limit; raise limits.memory in the config"
		}
		return &httpError{kind: "too_large", url: final, msg: fmt.Sprintf(
			"%s %s: the response body%s exceeds the limit of %s (%s; %s)", c.method, final, size,
			formatSize(c.maxBytes), c.maxSource, how)}
	}
	if resp.ContentLength > c.maxBytes {
		raiseHTTP(L, tooLarge(" of "+formatSize(resp.ContentLength)))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		raiseHTTP(L, classifyHTTP(L, runCtx, ctx, c, err))
	}
	if int64(len(data)) > c.maxBytes {
		raiseHTTP(L, tooLarge(""))
	}
	logger.DebugContext(runCtx, "http request", append(scriptAttrs(o), "method", c.method, "url", final,
		"status", resp.StatusCode, "bytes", len(data), "took", time.Since(start).Round(time.Millisecond))...)

	t := L.CreateTable(0, 4)
	t.RawSetString("status", lua.LNumber(resp.StatusCode))
	t.RawSetString("ok", lua.LBool(resp.StatusCode >= 200 && resp.StatusCode <= 299))
	ht := L.CreateTable(0, len(resp.Header))
	for k, v := range resp.Header {
		ht.RawSetString(strings.ToLower(k), lua.LString(strings.Join(v, ", ")))
	}
	t.RawSetString("headers", ht)
	t.RawSetString("body", lua.LString(data))
	L.SetMetatable(t, L.GetTypeMetatable(httpResponseTypeName))
	L.Push(t)
	return 1
}

// scriptAttrs returns the "script" log attribute when the state has one.
func scriptAttrs(o *Options) []any {
	if o.ScriptName == "" {
		return nil
	}
	return []any{"script", o.ScriptName}
}

// httpTransport returns the transport of one call: its own TLS settings,
// no connection reuse across calls (a call's settings must not leak into
// the next one's connection).
func httpTransport(o *Options, c *httpCall) *http.Transport {
	dial, proxy := o.HTTP.DialContext, http.ProxyFromEnvironment
	if dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		if len(o.HTTP.DenyLoopbackPorts) > 0 {
			// Judged on the address actually dialled, after name
			// resolution, so no host name leads around it.
			d.Control = func(_, address string, _ syscall.RawConn) error {
				return checkDial(o, address)
			}
		}
		dial = d.DialContext
	} else {
		proxy = nil
	}
	return &http.Transport{
		Proxy:       proxy,
		DialContext: dial,
		TLSClientConfig: &tls.Config{
			RootCAs:            c.rootCAs,
			InsecureSkipVerify: c.insecure, //nolint:gosec // the script asked for it by name
			MinVersion:         tls.VersionTLS12,
		},
		ForceAttemptHTTP2:   true,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: c.timeout,
	}
}

// deniedDialError refuses a connection to a denied loopback port.
type deniedDialError struct{ address, source string }

func (e *deniedDialError) Error() string {
	return "connection to " + e.address + " refused: it is " + e.source
}

// checkDial refuses address ("ip:port") when it is a loopback address at
// one of DenyLoopbackPorts.
func checkDial(o *Options, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return nil
	}
	for _, p := range o.HTTP.DenyLoopbackPorts {
		if int(ap.Port()) == p {
			src := o.HTTP.DenyLoopbackSource
			if src == "" {
				src = "a port scripts may not reach"
			}
			return &deniedDialError{address: address, source: src}
		}
	}
	return nil
}

// classifyHTTP turns a failed request or body read into an httpError
// whose message names the redacted URL. runCtx is the run's context, ctx
// the call's.
func classifyHTTP(L *lua.LState, runCtx, ctx context.Context, c *httpCall, err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	shown := redactURL(c.u)
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error names the URL with its query; keep only the cause.
		err = ue.Err
		if u, perr := url.Parse(ue.URL); perr == nil {
			shown = redactURL(u)
		}
	}
	e := &httpError{url: shown}
	prefix := c.method + " " + shown + ": "
	var dd *deniedDialError
	if errors.As(err, &dd) {
		return &httpError{kind: "denied", url: shown, msg: prefix + dd.Error()}
	}
	var (
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		hn  x509.HostnameError
		cve *tls.CertificateVerificationError
		rh  tls.RecordHeaderError
		ae  tls.AlertError
		me  *MemoryError
		ne  net.Error
	)
	switch {
	case runCtx.Err() != nil:
		if errors.As(context.Cause(runCtx), &me) {
			raiseMemory(L, me)
		}
		e.kind, e.msg = "timeout", prefix+"the run ended ("+runCtx.Err().Error()+") before the response"
		if errors.Is(runCtx.Err(), context.Canceled) {
			e.kind = "cancelled"
		}
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		e.kind, e.msg = "timeout", prefix+"no complete response within "+c.timeout.String()+" (timeout)"
	case errors.As(err, &ua), errors.As(err, &ci), errors.As(err, &hn), errors.As(err, &cve),
		errors.As(err, &rh), errors.As(err, &ae):
		e.kind, e.msg = "tls", prefix+"tls: "+strings.TrimPrefix(err.Error(), "tls: ")
	default:
		// Resolving, connecting, or the connection failing before the
		// whole response arrived.
		e.kind, e.msg = "connect", prefix+err.Error()
	}
	return e
}

// httpResponseJSON: resp:json() -> value, the body decoded by json.decode
// (with its memory limit).
func httpResponseJSON(L *lua.LState) int {
	t := L.CheckTable(1)
	body, ok := t.RawGetString("body").(lua.LString)
	if !ok {
		L.ArgError(1, "http response expected")
	}
	decode := L.GetField(jsonModule(L), "decode")
	L.Push(decode)
	L.Push(body)
	L.Call(1, 1)
	return 1
}

// jsonModule returns the state's json module, loading it as require would,
// so resp:json() uses the same json.null as the script.
func jsonModule(L *lua.LState) lua.LValue {
	loaded, ok := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	if ok {
		if m, ok := loaded.RawGetString("json").(*lua.LTable); ok {
			return m
		}
	}
	L.Push(L.NewFunction(openJSON))
	L.Call(0, 1)
	m := L.Get(-1)
	L.Pop(1)
	if loaded != nil {
		loaded.RawSetString("json", m)
	}
	return m
}
