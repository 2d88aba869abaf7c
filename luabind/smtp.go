package luabind

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/smtp"
)

// Account is a named SMTP account from the host's configuration. Scripts use
// it with smtp.connect{ account = "name" } (or smtp.connect() for the
// default account) and c:login() without arguments, so credentials stay in
// the host's configuration and out of scripts.
type Account struct {
	Host string
	Port int
	// TLS is "starttls", "implicit", "none" or "starttls-if-offered"; empty
	// follows the port.
	TLS      string
	Username string
	// Password returns the secret when login needs it; it is never logged.
	Password          func() (string, error)
	From              string
	Timeout           time.Duration
	AllowInsecureAuth bool
	// RootCAs, when set, replaces the system roots for this account (the
	// embedded dev server's generated certificate, a private CA).
	RootCAs *x509.CertPool
	// TLSFingerprints pins the server certificate by SHA-256 (see
	// smtp.Dialer.TLSFingerprints).
	TLSFingerprints [][32]byte
	// Concurrency and RatePerSecond shape the outbox's delivery for this
	// account (see outbox.Account); scripts' own connections ignore them.
	Concurrency   int
	RatePerSecond float64
	// IdleTimeout is how long the outbox keeps an idle session open (see
	// outbox.Account.IdleTimeout).
	IdleTimeout time.Duration
	// OAuth2, when set, logs in with an OAuth2 access token instead of
	// the password; OAuth2Mechanism is "XOAUTH2" (default) or "OAUTHBEARER".
	OAuth2          smtp.TokenSource
	OAuth2Mechanism string
	// Sign, when set, DKIM-signs each message sent with this account.
	Sign func(msg []byte) ([]byte, error)
	// Fallback names the accounts the outbox tries next when this one
	// cannot be reached or refuses the session before DATA (outbox only).
	Fallback []string
	// NoChunking sends messages with DATA even when the server offers
	// CHUNKING (BDAT), for scripts' connections and the outbox alike.
	NoChunking bool
}

// SMTPOptions configures the Lua smtp module. The zero value is usable.
type SMTPOptions struct {
	// Accounts are the configured accounts; DefaultAccount names the one
	// smtp.connect() uses without a host.
	Accounts       map[string]Account
	DefaultAccount string
	// Logger receives debug transcripts (debug = true); default
	// slog.Default().
	Logger *slog.Logger
	// NetDialer overrides how connections are made (tests).
	NetDialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
	// DryRun, when set, sends every connection to a local capture server
	// instead of the requested host, so nothing leaves the machine.
	DryRun *DryRun
}

// DryRun describes the local capture server of a dry run (the CLI's
// --dry-run starts one and stores what it receives).
type DryRun struct {
	// Addr is the capture server's TCP address.
	Addr string
	// RootCAs trusts the capture server's certificate, which is valid for
	// "localhost"; certificate pins are ignored in a dry run.
	RootCAs *x509.CertPool
	// Transcript, if set, returns a writer for the SMTP transcript of a
	// connection the script meant for host:port.
	Transcript func(hostport string) io.Writer
}

const smtpClientTypeName = "mailbot.smtp.client"
const smtpErrorTypeName = "mailbot.smtp.error"

// luaClient is the Lua-side state of one SMTP client.
type luaClient struct {
	c       *smtp.Client
	dialer  smtp.Dialer
	account *Account
	// accountName names account; accountPort and accountTLS are its
	// effective port and TLS mode, the only ones its credentials go to.
	accountName string
	accountPort int
	accountTLS  smtp.TLSMode
	host        string
	port        int
	debug       bool
	// tlsExplicit records that the script or account chose the TLS mode.
	tlsExplicit bool
	dryRun      *DryRun
	// dryTranscript receives the transcript in a dry run, whatever the
	// script does with set_debuglevel.
	dryTranscript io.Writer
}

// clientRegistry records the clients each state opened, so the host can
// close them when a run ends: Lua has no reliable finaliser (no __gc on
// userdata in gopher-lua), and a script that errors out never reaches
// c:quit().
var clientRegistry = struct {
	sync.Mutex
	m map[*lua.LState][]*luaClient
}{m: make(map[*lua.LState][]*luaClient)}

func registerClient(L *lua.LState, lc *luaClient) {
	clientRegistry.Lock()
	clientRegistry.m[L] = append(clientRegistry.m[L], lc)
	clientRegistry.Unlock()
}

// CloseResources closes every SMTP connection scripts opened in L and
// forgets them. Hosts call it after each run, whatever its outcome.
func CloseResources(L *lua.LState) {
	clientRegistry.Lock()
	list := clientRegistry.m[L]
	delete(clientRegistry.m, L)
	clientRegistry.Unlock()
	for _, lc := range list {
		if lc.c != nil {
			lc.c.Close()
		}
	}
}

// NewSMTPModule returns the loader of the Lua module "smtp", for
// L.PreloadModule("smtp", luabind.NewSMTPModule(opts)). See docs/lua-api.md
// for the whole API; in short:
//
//	local c = smtp.connect{ host = "smtp.example.com", port = 587, tls = "starttls" }
//	c:login(user, password)
//	local refused = c:sendmail(from, { "a@example.com" }, msg)
//	c:quit()
//
// Failures raise a table {kind, code, enhanced, message, recipients, ...}
// whose kind is the smtplib exception name.
func NewSMTPModule(opts SMTPOptions) lua.LGFunction {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return func(L *lua.LState) int {
		registerSMTPTypes(L, &opts)
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"connect": func(L *lua.LState) int { return smtpConnect(L, &opts) },
			"new":     func(L *lua.LState) int { return smtpNew(L, &opts) },
		})
		L.Push(mod)
		return 1
	}
}

func registerSMTPTypes(L *lua.LState, opts *SMTPOptions) {
	mt := L.NewTypeMetatable(smtpClientTypeName)
	methods := map[string]lua.LGFunction{
		"connect":                func(L *lua.LState) int { return clientConnect(L, opts) },
		"ehlo":                   clientEhlo,
		"helo":                   clientHelo,
		"ehlo_or_helo_if_needed": clientEhloOrHelo,
		"starttls":               clientStartTLS,
		"login":                  clientLogin,
		"sendmail":               clientSendmail,
		"send_message":           clientSendMessage,
		"send_batch":             clientSendBatch,
		"mail":                   clientMail,
		"rcpt":                   clientRcpt,
		"data":                   clientData,
		"docmd":                  clientDocmd,
		"putcmd":                 clientPutcmd,
		"getreply":               clientGetreply,
		"has_extn":               clientHasExtn,
		"extensions":             clientExtensions,
		"auth_mechanisms":        clientAuthMechanisms,
		"verify":                 clientVerify,
		"expn":                   clientExpn,
		"help":                   clientHelp,
		"noop":                   clientNoop,
		"rset":                   clientRset,
		"quit":                   clientQuit,
		"close":                  clientClose,
		"tls_info":               clientTLSInfo,
		"set_debuglevel":         clientSetDebuglevel,
	}
	L.SetField(mt, "__index", L.SetFuncs(L.NewTable(), methods))
	L.SetField(mt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		lc := checkClient(L, 1)
		state := "not connected"
		if lc.c != nil {
			state = "connected"
			if _, ok := lc.c.TLSConnectionState(); ok {
				state = "connected, TLS"
			}
		}
		L.Push(lua.LString(fmt.Sprintf("smtp client %s:%d (%s)", lc.host, lc.port, state)))
		return 1
	}))
	emt := L.NewTypeMetatable(smtpErrorTypeName)
	L.SetField(emt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		L.Push(lua.LString(L.GetField(t, "kind").String() + ": " + errorDetail(t)))
		return 1
	}))
}

// errorDetailKey names the field of an error table's own metatable that
// holds the full description of the failure ("sender <a@b> refused: MAIL:
// 553 5.7.1 ..."). It lives in the metatable so that the table itself keeps
// exactly the documented fields while tostring and the logs keep the
// context that message, the server's own words, leaves out.
const errorDetailKey = "__detail"

// errorDetail returns the full description of an error table: the detail
// in its metatable, or its message for tables built elsewhere.
func errorDetail(t *lua.LTable) string {
	if mt, ok := t.Metatable.(*lua.LTable); ok {
		if d, ok := mt.RawGetString(errorDetailKey).(lua.LString); ok {
			return string(d)
		}
	}
	return t.RawGetString("message").String()
}

func checkClient(L *lua.LState, n int) *luaClient {
	ud := L.CheckUserData(n)
	if lc, ok := ud.Value.(*luaClient); ok {
		return lc
	}
	L.ArgError(n, "smtp client expected")
	return nil
}

// effectiveTLSConfig returns cfg, or in a dry run a copy that trusts the
// capture server instead.
func (lc *luaClient) effectiveTLSConfig(cfg *tls.Config) *tls.Config {
	if lc.dryRun == nil {
		return cfg
	}
	cfg = cfg.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs, cfg.ServerName, cfg.InsecureSkipVerify = lc.dryRun.RootCAs, "localhost", false
	return cfg
}

// connected returns the client's connection or raises SMTPServerDisconnected.
func connected(L *lua.LState, lc *luaClient) *smtp.Client {
	if lc.c == nil {
		raiseSMTP(L, &smtp.DisconnectedError{Op: "command", Err: errors.New("not connected; call connect() first")})
	}
	return lc.c
}

func runCtx(L *lua.LState) context.Context {
	if ctx := L.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// smtpNew: smtp.new([opts]) -> client, unconnected, for scripts written the
// smtplib way (c:connect(host, port) follows).
func smtpNew(L *lua.LState, opts *SMTPOptions) int {
	lc := &luaClient{}
	if t, ok := L.Get(1).(*lua.LTable); ok {
		configureClient(L, opts, lc, t)
	} else {
		configureClient(L, opts, lc, L.NewTable())
	}
	ud := L.NewUserData()
	ud.Value = lc
	L.SetMetatable(ud, L.GetTypeMetatable(smtpClientTypeName))
	registerClient(L, lc)
	L.Push(ud)
	return 1
}

// smtpConnect: smtp.connect{host=, port=, tls=, ...} -> client, connected.
func smtpConnect(L *lua.LState, opts *SMTPOptions) int {
	t := L.OptTable(1, L.NewTable())
	lc := &luaClient{}
	configureClient(L, opts, lc, t)
	ud := L.NewUserData()
	ud.Value = lc
	L.SetMetatable(ud, L.GetTypeMetatable(smtpClientTypeName))
	registerClient(L, lc)
	dial(L, lc)
	L.Push(ud)
	return 1
}

var connectFields = map[string]bool{
	"host": true, "port": true, "tls": true, "timeout": true, "local_hostname": true,
	"ca_file": true, "insecure_skip_verify": true, "allow_insecure_auth": true, "debug": true,
	"account": true, "lmtp": true, "tls_fingerprint": true, "socket": true,
}

// checkAccountOverrides refuses options that would change where an
// account's credentials go, or weaken how the server is verified: another
// host, port, TLS mode or socket, allow_insecure_auth, insecure_skip_verify,
// ca_file, tls_fingerprint. A value equal to the account's own is no
// override. Timeouts, debug, local_hostname and lmtp stay free.
func checkAccountOverrides(L *lua.LState, t *lua.LTable, name string, implicit bool, a Account) {
	mode, port, err := tlsDefaults(a.TLS, a.Port)
	if err != nil {
		L.RaiseError("smtp.connect: account %q: %s", name, strings.TrimPrefix(err.Error(), "smtp: "))
	}
	var bad []string
	if v, ok := L.GetField(t, "host").(lua.LString); ok && string(v) != a.Host {
		bad = append(bad, "host")
	}
	if v, ok := L.GetField(t, "port").(lua.LNumber); ok && int(v) != port {
		bad = append(bad, "port")
	}
	if v, ok := L.GetField(t, "tls").(lua.LString); ok {
		if m, err := smtp.ParseTLSMode(string(v)); err != nil || m != mode {
			bad = append(bad, "tls")
		}
	}
	if L.GetField(t, "socket") != lua.LNil {
		bad = append(bad, "socket")
	}
	if lua.LVAsBool(L.GetField(t, "allow_insecure_auth")) && !a.AllowInsecureAuth {
		bad = append(bad, "allow_insecure_auth")
	}
	if lua.LVAsBool(L.GetField(t, "insecure_skip_verify")) {
		bad = append(bad, "insecure_skip_verify")
	}
	for _, k := range []string{"ca_file", "tls_fingerprint"} {
		if L.GetField(t, k) != lua.LNil {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return
	}
	which := fmt.Sprintf("account %q", name)
	if implicit {
		which = fmt.Sprintf("the default account %q (used because no host is given)", name)
	}
	L.RaiseError("smtp.connect: cannot override %s of %s: an account's credentials go only to its own host, port and TLS settings (for another server, give host and no account, and pass user and password to c:login)",
		strings.Join(bad, ", "), which)
}

// checkAccountTarget refuses c:connect(host, port) to anything but the
// account's own server on a client bound to an account.
func checkAccountTarget(L *lua.LState, lc *luaClient, host string, port int) {
	if lc.account == nil {
		return
	}
	if host != lc.account.Host || (port != 0 && port != lc.accountPort) {
		L.RaiseError("connect: this client uses account %q, whose credentials go only to %s; create the client with smtp.new{ host = ... } (no account) to connect elsewhere",
			lc.accountName, net.JoinHostPort(lc.account.Host, strconv.Itoa(lc.accountPort)))
	}
}

// checkAccountLogin is the last line of defence before an account's
// password is sent: the connection must be to the account's own server,
// and encrypted when the account's TLS mode is starttls or implicit.
func checkAccountLogin(L *lua.LState, lc *luaClient, c *smtp.Client) {
	if lc.host != lc.account.Host || lc.port != lc.accountPort {
		L.RaiseError("login: the connection is to %s, not to account %q's server; its credentials go only there",
			net.JoinHostPort(lc.host, strconv.Itoa(lc.port)), lc.accountName)
	}
	if lc.accountTLS == smtp.TLSStartTLS || lc.accountTLS == smtp.TLSImplicit {
		if _, ok := c.TLSConnectionState(); !ok {
			L.RaiseError("login: account %q requires TLS (tls = %s) before its credentials are sent; call c:starttls() first", lc.accountName, lc.accountTLS)
		}
	}
}

// configureClient reads connect options into lc.dialer, starting from the
// named (or default) account when one applies.
func configureClient(L *lua.LState, opts *SMTPOptions, lc *luaClient, t *lua.LTable) {
	var bad string
	t.ForEach(func(k, _ lua.LValue) {
		if ks, ok := k.(lua.LString); !ok || !connectFields[string(ks)] {
			if bad == "" {
				bad = k.String()
			}
		}
	})
	if bad != "" {
		L.RaiseError("smtp.connect: unknown option %q (known: host, port, tls, timeout, local_hostname, ca_file, insecure_skip_verify, allow_insecure_auth, debug, account, lmtp, tls_fingerprint, socket)", bad)
	}
	d := &lc.dialer
	d.NetDialer = opts.NetDialer
	tlsCfg := &tls.Config{}

	accountName := optString(L, t, "account", "")
	implicit := false
	if accountName == "" && L.GetField(t, "host") == lua.LNil && L.GetField(t, "socket") == lua.LNil && opts.DefaultAccount != "" {
		accountName, implicit = opts.DefaultAccount, true
	}
	if accountName != "" {
		a, ok := opts.Accounts[accountName]
		if !ok {
			L.RaiseError("smtp.connect: unknown account %q (configure it under accounts: in the config file)", accountName)
		}
		checkAccountOverrides(L, t, accountName, implicit, a)
		lc.account = &a
		lc.accountName = accountName
		lc.accountTLS, lc.accountPort, _ = tlsDefaults(a.TLS, a.Port)
		lc.host, lc.port = a.Host, a.Port
		if a.Timeout > 0 {
			d.Timeout, d.CommandTimeout = a.Timeout, a.Timeout
		}
		d.AllowInsecureAuth = a.AllowInsecureAuth
		d.TLSFingerprints = a.TLSFingerprints
		d.NoChunking = a.NoChunking
		if a.RootCAs != nil {
			tlsCfg.RootCAs = a.RootCAs
		}
	}
	if h := optString(L, t, "host", ""); h != "" {
		lc.host = h
	}
	if lc.host == "" && L.GetField(t, "socket") == lua.LNil {
		lc.host = "localhost"
	}
	if v := L.GetField(t, "port"); v != lua.LNil {
		n, ok := v.(lua.LNumber)
		if !ok || n < 1 || n > 65535 {
			L.RaiseError("smtp.connect: port must be a number from 1 to 65535")
		}
		lc.port = int(n)
	}
	tlsName := optString(L, t, "tls", "")
	if tlsName == "" && lc.account != nil {
		tlsName = lc.account.TLS
	}
	mode, port, err := tlsDefaults(tlsName, lc.port)
	if err != nil {
		L.RaiseError("smtp.connect: %s", strings.TrimPrefix(err.Error(), "smtp: "))
	}
	d.TLS, lc.port, lc.tlsExplicit = mode, port, tlsName != ""
	if v := L.GetField(t, "timeout"); v != lua.LNil {
		n, ok := v.(lua.LNumber)
		if !ok || n <= 0 {
			L.RaiseError("smtp.connect: timeout must be a positive number of seconds")
		}
		to := time.Duration(float64(n) * float64(time.Second))
		d.Timeout, d.CommandTimeout, d.DataTimeout = to, to, to
	}
	if d.Timeout == 0 {
		d.Timeout, d.CommandTimeout = 30*time.Second, 30*time.Second
	}
	d.LocalName = optString(L, t, "local_hostname", "")
	if f := optString(L, t, "ca_file", ""); f != "" {
		pem, err := stateFiles(L).readPublic(f)
		if err != nil {
			L.RaiseError("smtp.connect: ca_file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			L.RaiseError("smtp.connect: ca_file %s holds no PEM certificate", f)
		}
		tlsCfg.RootCAs = pool
	}
	if optBool(L, t, "insecure_skip_verify", false) {
		tlsCfg.InsecureSkipVerify = true
	}
	if v := L.GetField(t, "allow_insecure_auth"); v != lua.LNil {
		d.AllowInsecureAuth = lua.LVAsBool(v)
	}
	if fp := optString(L, t, "tls_fingerprint", ""); fp != "" {
		pin, err := smtp.ParseFingerprint(fp)
		if err != nil {
			L.RaiseError("smtp.connect: tls_fingerprint: %s", strings.TrimPrefix(err.Error(), "smtp: "))
		}
		d.TLSFingerprints = [][32]byte{pin}
	}
	d.LMTP = optBool(L, t, "lmtp", false)
	d.TLSConfig = tlsCfg
	if optBool(L, t, "debug", false) {
		lc.debug = true
		d.Debug = &transcriptLog{logger: opts.Logger, script: scriptName(L)}
	}
	if s := optString(L, t, "socket", ""); s != "" {
		lc.host = s
		lc.port = 0
	}
	lc.dryRun = opts.DryRun
}

func optString(L *lua.LState, t *lua.LTable, key, def string) string {
	v := L.GetField(t, key)
	if v == lua.LNil {
		return def
	}
	s, ok := v.(lua.LString)
	if !ok {
		L.RaiseError("smtp.connect: %s must be a string, got %s", key, v.Type())
	}
	return string(s)
}

func optBool(L *lua.LState, t *lua.LTable, key string, def bool) bool {
	v := L.GetField(t, key)
	if v == lua.LNil {
		return def
	}
	b, ok := v.(lua.LBool)
	if !ok {
		L.RaiseError("smtp.connect: %s must be a boolean, got %s", key, v.Type())
	}
	return bool(b)
}

// scriptName returns the running chunk's name for log records.
func scriptName(L *lua.LState) string {
	if v := L.GetGlobal("mailbot"); v != lua.LNil {
		if t, ok := v.(*lua.LTable); ok {
			if s, ok := L.GetField(t, "script").(lua.LString); ok {
				return string(s)
			}
		}
	}
	return ""
}

// dial connects lc as configured, raising on failure.
func dial(L *lua.LState, lc *luaClient) {
	if lc.c != nil {
		lc.c.Close()
		lc.c = nil
	}
	var (
		c   *smtp.Client
		err error
	)
	target := net.JoinHostPort(lc.host, strconv.Itoa(lc.port))
	switch {
	case lc.dryRun != nil:
		d := lc.dialer // a copy: the script's settings stay as they were
		d.TLSConfig = lc.effectiveTLSConfig(d.TLSConfig)
		d.TLSFingerprints = nil
		d.LMTP = false
		if d.TLS == smtp.TLSImplicit {
			// The capture server speaks STARTTLS only; the message and
			// its transcript are what a dry run is about.
			d.TLS = smtp.TLSStartTLS
		}
		if lc.dryRun.Transcript != nil {
			if w := lc.dryRun.Transcript(target); w != nil {
				lc.dryTranscript = w
				if d.Debug != nil {
					d.Debug = io.MultiWriter(d.Debug, w)
				} else {
					d.Debug = w
				}
			}
		}
		c, err = d.Dial(runCtx(L), lc.dryRun.Addr)
	case lc.port == 0: // a Unix socket path
		c, err = lc.dialer.DialUnix(runCtx(L), lc.host)
	default:
		c, err = lc.dialer.Dial(runCtx(L), target)
	}
	if err != nil {
		raiseSMTP(L, err)
	}
	lc.c = c
}

// clientConnect: c:connect([host [, port]]) -> code, text of the greeting.
func clientConnect(L *lua.LState, opts *SMTPOptions) int {
	lc := checkClient(L, 1)
	host, port := lc.host, 0
	if L.GetTop() >= 2 {
		host = L.CheckString(2)
		if h, p, err := net.SplitHostPort(host); err == nil && L.GetTop() < 3 {
			host = h
			port, _ = strconv.Atoi(p)
		}
	}
	if L.GetTop() >= 3 {
		port = L.CheckInt(3)
	}
	checkAccountTarget(L, lc, host, port)
	lc.host = host
	if port != 0 {
		lc.port = port
	}
	// smtplib's connect does no TLS: the script calls starttls() itself.
	// Implicit TLS (port 465 or tls = "implicit") must happen before the
	// greeting, so connect does that one.
	if lc.port == 465 && !lc.tlsExplicit {
		lc.dialer.TLS = smtp.TLSImplicit
	}
	if lc.dialer.TLS != smtp.TLSImplicit {
		lc.dialer.TLS = smtp.TLSNone
	}
	dial(L, lc)
	return pushReply(L, lc.c.Greeting())
}

func pushReply(L *lua.LState, r smtp.Reply) int {
	L.Push(lua.LNumber(r.Code))
	L.Push(lua.LString(r.Text()))
	return 2
}

// replyOrRaise returns code, text for well-formed replies, negative ones
// included (smtplib's ehlo, verify, noop... do not raise on them), and
// raises on transport and protocol failures.
func replyOrRaise(L *lua.LState, r smtp.Reply, err error) int {
	var se *smtp.SMTPError
	if err != nil && !(errors.As(err, &se) && r.Code != 0) {
		raiseSMTP(L, err)
	}
	return pushReply(L, r)
}

// clientEhlo: c:ehlo([name]) -> code, text
func clientEhlo(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	if n := L.OptString(2, ""); n != "" {
		c.LocalName = n
	}
	r, err := c.Ehlo(runCtx(L))
	return replyOrRaise(L, r, err)
}

// clientHelo: c:helo([name]) -> code, text
func clientHelo(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	if n := L.OptString(2, ""); n != "" {
		c.LocalName = n
	}
	r, err := c.Helo(runCtx(L))
	return replyOrRaise(L, r, err)
}

// clientEhloOrHelo: c:ehlo_or_helo_if_needed(); raises SMTPHeloError.
func clientEhloOrHelo(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	if err := c.EhloOrHeloIfNeeded(runCtx(L)); err != nil {
		raiseSMTP(L, err)
	}
	return 0
}

// clientStartTLS: c:starttls([{ ca_file=, insecure_skip_verify= }]) -> code, text.
// On a connection already encrypted by connect it does nothing and returns
// 220, so the seeds' flow runs unchanged after smtp.connect{tls="starttls"}.
func clientStartTLS(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	if _, ok := c.TLSConnectionState(); ok {
		L.Push(lua.LNumber(220))
		L.Push(lua.LString("TLS already active"))
		return 2
	}
	cfg := lc.dialer.TLSConfig
	if t, ok := L.Get(2).(*lua.LTable); ok {
		if lc.account != nil && (L.GetField(t, "ca_file") != lua.LNil || lua.LVAsBool(L.GetField(t, "insecure_skip_verify"))) {
			L.RaiseError("starttls: ca_file and insecure_skip_verify cannot be used on a connection of account %q: its server is verified as the account says", lc.accountName)
		}
		cfg = cfg.Clone()
		if f := optString(L, t, "ca_file", ""); f != "" {
			pem, err := stateFiles(L).readPublic(f)
			if err != nil {
				L.RaiseError("starttls: ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			cfg.RootCAs = pool
		}
		if optBool(L, t, "insecure_skip_verify", false) {
			cfg.InsecureSkipVerify = true
		}
	}
	if err := c.StartTLS(runCtx(L), lc.effectiveTLSConfig(cfg)); err != nil {
		raiseSMTP(L, err)
	}
	L.Push(lua.LNumber(220))
	L.Push(lua.LString("TLS established"))
	return 2
}

// clientLogin: c:login([user, password [, { mechanism = "PLAIN" }]]) -> 235.
// Without user and password it uses the account's credentials: its
// OAuth2 token source when it has one, else its password.
func clientLogin(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	user, pass := L.OptString(2, ""), L.OptString(3, "")
	mechName := ""
	if t, ok := L.Get(4).(*lua.LTable); ok && L.GetField(t, "mechanism") != lua.LNil {
		mechName = strings.ToUpper(L.GetField(t, "mechanism").String())
	}
	ctx := runCtx(L)
	if L.GetTop() < 2 || L.Get(2) == lua.LNil {
		if lc.account == nil || lc.account.Username == "" {
			L.RaiseError("login: no user name given and the connection has no account with a username")
		}
		user = lc.account.Username
		if lc.dryRun == nil {
			checkAccountLogin(L, lc, c)
		}
		switch {
		case lc.account.OAuth2 != nil && lc.dryRun != nil:
			// Nothing leaves the machine in a dry run, a token request
			// included: the capture server accepts any password.
			pass, mechName = "dry-run", ""
		case lc.account.OAuth2 != nil:
			mech := lc.account.OAuth2Mechanism
			if mechName != "" {
				if mechName != smtp.MechXOAuth2 && mechName != smtp.MechOAuthBearer {
					L.RaiseError("login: account %q logs in with OAuth2: mechanism must be XOAUTH2 or OAUTHBEARER, not %q", lc.accountName, mechName)
				}
				mech = mechName
			}
			if err := c.LoginOAuth2(ctx, user, lc.account.OAuth2, mech); err != nil {
				raiseSMTP(L, err)
			}
			return pushLoginOK(L)
		case lc.account.Password != nil:
			p, err := lc.account.Password()
			if err != nil && lc.dryRun != nil {
				// A dry run may happen where the secret is not set;
				// the capture server accepts any password.
				p, err = "dry-run", nil
			}
			if err != nil {
				L.RaiseError("login: password for account user %q: %v", user, err)
			}
			pass = p
		}
	}
	var err error
	if mechName != "" {
		var mech smtp.Mechanism
		switch mechName {
		case "PLAIN":
			mech = smtp.PlainAuth("", user, pass)
		case "LOGIN":
			mech = smtp.LoginAuth(user, pass)
		case "CRAM-MD5":
			mech = smtp.CRAMMD5Auth(user, pass)
		case smtp.MechXOAuth2:
			mech = smtp.XOAuth2Auth(user, pass)
		case smtp.MechOAuthBearer:
			host := lc.host
			if lc.port == 0 {
				host = "" // a Unix socket path is no host name
			}
			mech = smtp.OAuthBearerAuth(user, pass, host, lc.port)
		case "SCRAM-SHA-256":
			mech = smtp.ScramSHA256Auth(user, pass)
		default:
			L.RaiseError("login: unknown mechanism %q (PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER, SCRAM-SHA-256)", mechName)
		}
		err = c.Auth(ctx, mech)
	} else {
		err = c.Login(ctx, user, pass)
	}
	if err != nil {
		raiseSMTP(L, err)
	}
	return pushLoginOK(L)
}

func pushLoginOK(L *lua.LState) int {
	L.Push(lua.LNumber(235))
	L.Push(lua.LString("authentication succeeded"))
	return 2
}

// stringList accepts a string or a list of strings.
func stringList(L *lua.LState, n int, what string) []string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return []string{string(v)}
	case *lua.LTable:
		out := make([]string, 0, v.Len())
		for i := 1; i <= v.Len(); i++ {
			s, ok := v.RawGetInt(i).(lua.LString)
			if !ok {
				L.ArgError(n, fmt.Sprintf("%s[%d] must be a string", what, i))
			}
			out = append(out, string(s))
		}
		return out
	case *lua.LNilType:
		return nil
	}
	L.ArgError(n, what+" must be a string or a list of strings")
	return nil
}

// sendOptions reads { mail_options = {...}, rcpt_options = {...} | {addr = {...}} , dsn = {...} }.
func sendOptions(L *lua.LState, n int) *smtp.SendOptions {
	t, ok := L.Get(n).(*lua.LTable)
	if !ok {
		if L.Get(n) != lua.LNil {
			L.ArgError(n, "options table expected")
		}
		return nil
	}
	o := &smtp.SendOptions{}
	tableStrings := func(v lua.LValue, what string) []string {
		tt, ok := v.(*lua.LTable)
		if !ok {
			L.RaiseError("%s must be a list of strings", what)
		}
		var out []string
		for i := 1; i <= tt.Len(); i++ {
			out = append(out, tt.RawGetInt(i).String())
		}
		return out
	}
	if v := L.GetField(t, "mail_options"); v != lua.LNil {
		o.MailParams = tableStrings(v, "mail_options")
	}
	if v := L.GetField(t, "rcpt_options"); v != lua.LNil {
		tt, ok := v.(*lua.LTable)
		if !ok {
			L.RaiseError("rcpt_options must be a table")
		}
		o.RcptParams = tableStrings(tt, "rcpt_options")
		tt.ForEach(func(k, val lua.LValue) {
			if ks, ok := k.(lua.LString); ok {
				if o.RcptParamsFor == nil {
					o.RcptParamsFor = map[string][]string{}
				}
				o.RcptParamsFor[string(ks)] = tableStrings(val, "rcpt_options["+string(ks)+"]")
			}
		})
	}
	if v := L.GetField(t, "dsn"); v != lua.LNil {
		dt, ok := v.(*lua.LTable)
		if !ok {
			L.RaiseError("dsn must be a table")
		}
		d := &smtp.DSN{}
		if s := L.GetField(dt, "ret"); s != lua.LNil {
			d.Return = s.String()
		}
		if s := L.GetField(dt, "envid"); s != lua.LNil {
			d.EnvelopeID = s.String()
		}
		switch nv := L.GetField(dt, "notify").(type) {
		case lua.LString:
			d.Notify = strings.Split(string(nv), ",")
		case *lua.LTable:
			d.Notify = tableStrings(nv, "dsn.notify")
		}
		if nf, ok := L.GetField(dt, "notify_for").(*lua.LTable); ok {
			d.NotifyFor = map[string][]string{}
			nf.ForEach(func(k, val lua.LValue) {
				if s, ok := val.(lua.LString); ok {
					d.NotifyFor[k.String()] = strings.Split(string(s), ",")
				} else {
					d.NotifyFor[k.String()] = tableStrings(val, "dsn.notify_for")
				}
			})
		}
		d.OriginalRecipient = lua.LVAsBool(L.GetField(dt, "orcpt"))
		o.DSN = d
	}
	if v := L.GetField(t, "chunking"); v != lua.LNil {
		if _, ok := v.(lua.LBool); !ok {
			L.RaiseError("chunking must be a boolean")
		}
		o.NoChunking = !lua.LVAsBool(v)
	}
	return o
}

// messageBytes accepts a string or a mail.message. A string is passed
// without a copy: the smtp client only reads the message and keeps no
// reference once the call returns (SendMail and DataWriter.Write document
// that), so aliasing the immutable Lua string is safe. A message is
// rendered once.
func messageBytes(L *lua.LState, n int) []byte {
	switch v := L.Get(n).(type) {
	case lua.LString:
		if len(v) == 0 {
			return nil
		}
		return unsafe.Slice(unsafe.StringData(string(v)), len(v))
	default:
		if m, ok := messageFromValue(v); ok {
			b, err := m.Bytes()
			if err != nil {
				L.RaiseError("sendmail: building the message: %v", err)
			}
			return b
		}
	}
	L.ArgError(n, "message must be a string or a mail.message")
	return nil
}

// dkimSign DKIM-signs msg when lc was connected with an account that signs
// (Account.Sign); other clients send msg as given. It raises when the
// message cannot be signed: sending it unsigned would break the account's
// promise.
func dkimSign(L *lua.LState, lc *luaClient, what string, msg []byte) []byte {
	if lc.account == nil || lc.account.Sign == nil {
		return msg
	}
	signed, err := lc.account.Sign(msg)
	if err != nil {
		L.RaiseError("%s: DKIM-signing for account %q: %v", what, lc.accountName, err)
	}
	return signed
}

// clientSendmail: c:sendmail(from, to, msg [, opts]) -> refused
// refused maps each refused address to { code, message, enhanced, temporary };
// empty when every recipient accepted. Raises when all are refused.
func clientSendmail(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	from := L.CheckString(2)
	to := stringList(L, 3, "to")
	msg := dkimSign(L, lc, "sendmail", messageBytes(L, 4))
	refused, err := c.SendMail(runCtx(L), from, to, msg, sendOptions(L, 5))
	if err != nil {
		raiseSMTP(L, err)
	}
	L.Push(refusalsTable(L, refused))
	return 1
}

// clientSendMessage: c:send_message(m [, { from=, to=, mail_options=, ... }]) -> refused
// The envelope comes from the message (Sender or From; To, Cc and Bcc),
// like smtplib's send_message; from/to in the options override it.
func clientSendMessage(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	m := checkMessage(L, 2)
	from, err := m.EnvelopeFrom()
	if err != nil {
		L.RaiseError("send_message: %v", err)
	}
	to, err := m.Recipients()
	if err != nil {
		L.RaiseError("send_message: %v", err)
	}
	if t, ok := L.Get(3).(*lua.LTable); ok {
		if v := L.GetField(t, "from"); v != lua.LNil {
			from = v.String()
		}
		if v := L.GetField(t, "to"); v != lua.LNil {
			L.Push(v)
			to = stringList(L, L.GetTop(), "to")
			L.Pop(1)
		}
	}
	b, err := m.Bytes()
	if err != nil {
		L.RaiseError("send_message: building the message: %v", err)
	}
	b = dkimSign(L, lc, "send_message", b)
	refused, err := c.SendMail(runCtx(L), from, to, b, sendOptions(L, 3))
	if err != nil {
		raiseSMTP(L, err)
	}
	L.Push(refusalsTable(L, refused))
	return 1
}

func refusalsTable(L *lua.LState, r smtp.Refusals) *lua.LTable {
	// Sized exactly: L.NewTable() preallocates ~3 KB, which the common
	// "nobody refused" result would pay on every message.
	t := L.CreateTable(0, len(r))
	for addr, e := range r {
		t.RawSetString(addr, smtpErrorFields(L, e))
	}
	return t
}

func smtpErrorFields(L *lua.LState, e *smtp.SMTPError) *lua.LTable {
	t := L.CreateTable(0, 4)
	t.RawSetString("code", lua.LNumber(e.Code))
	t.RawSetString("message", lua.LString(e.Message))
	if !e.Enhanced.IsZero() {
		t.RawSetString("enhanced", lua.LString(e.Enhanced.String()))
	}
	t.RawSetString("temporary", lua.LBool(e.Temporary()))
	return t
}

// paramList reads an optional list of ESMTP parameters at n.
func paramList(L *lua.LState, n int) []string {
	if L.Get(n) == lua.LNil {
		return nil
	}
	return stringList(L, n, "options")
}

// clientMail: c:mail(from [, options]) -> code, text (like smtplib, no raise on refusal)
func clientMail(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	err := c.Mail(runCtx(L), L.CheckString(2), paramList(L, 3)...)
	return codeTextOf(L, err, 250, "ok")
}

// clientRcpt: c:rcpt(to [, options]) -> code, text
func clientRcpt(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	err := c.Rcpt(runCtx(L), L.CheckString(2), paramList(L, 3)...)
	return codeTextOf(L, err, 250, "ok")
}

// codeTextOf pushes the code and text of a refusal, or the success values;
// errors other than refusals raise.
func codeTextOf(L *lua.LState, err error, okCode int, okText string) int {
	var se *smtp.SMTPError
	if err == nil {
		L.Push(lua.LNumber(okCode))
		L.Push(lua.LString(okText))
		return 2
	}
	var ns *smtp.NotSupportedError
	if errors.As(err, &se) && !errors.As(err, &ns) {
		L.Push(lua.LNumber(se.Code))
		L.Push(lua.LString(se.Message))
		return 2
	}
	raiseSMTP(L, err)
	return 0
}

// clientData: c:data(msg) -> code, text; raises SMTPDataError on refusal.
func clientData(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	msg := dkimSign(L, lc, "data", messageBytes(L, 2))
	w, err := c.Data(runCtx(L))
	if err != nil {
		raiseSMTP(L, err)
	}
	if _, err := w.Write(msg); err != nil {
		raiseSMTP(L, err)
	}
	if err := w.Close(); err != nil {
		raiseSMTP(L, err)
	}
	L.Push(lua.LNumber(250))
	L.Push(lua.LString("ok"))
	return 2
}

// commandLine joins cmd and args like smtplib's putcmd.
func commandLine(L *lua.LState) string {
	cmd := L.CheckString(2)
	if args := L.OptString(3, ""); args != "" {
		return cmd + " " + args
	}
	return cmd
}

// clientDocmd: c:docmd(cmd [, args]) -> code, text; never raises on a reply code.
func clientDocmd(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	r, err := c.DoCmd(runCtx(L), commandLine(L))
	if err != nil {
		raiseSMTP(L, err)
	}
	return pushReply(L, r)
}

// clientPutcmd: c:putcmd(cmd [, args]) sends without reading the reply.
func clientPutcmd(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	if err := c.PutCmd(runCtx(L), commandLine(L)); err != nil {
		raiseSMTP(L, err)
	}
	return 0
}

// clientGetreply: c:getreply() -> code, text
func clientGetreply(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	r, err := c.GetReply(runCtx(L))
	if err != nil {
		raiseSMTP(L, err)
	}
	return pushReply(L, r)
}

// clientHasExtn: c:has_extn(name) -> bool (case-insensitive)
func clientHasExtn(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	L.Push(lua.LBool(c.HasExtension(L.CheckString(2))))
	return 1
}

// clientExtensions: c:extensions() -> { NAME = params, ... }
func clientExtensions(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	t := L.NewTable()
	for k, v := range c.Extensions() {
		t.RawSetString(k, lua.LString(v))
	}
	L.Push(t)
	return 1
}

// clientAuthMechanisms: c:auth_mechanisms() -> { "PLAIN", ... }
func clientAuthMechanisms(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	t := L.NewTable()
	for _, m := range c.AuthMechanisms() {
		t.Append(lua.LString(m))
	}
	L.Push(t)
	return 1
}

// clientVerify: c:verify(addr) -> code, text
func clientVerify(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	r, err := c.Verify(runCtx(L), L.CheckString(2))
	return replyOrRaise(L, r, err)
}

// clientExpn: c:expn(list) -> code, text
func clientExpn(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	r, err := c.Expn(runCtx(L), L.CheckString(2))
	return replyOrRaise(L, r, err)
}

// clientHelp: c:help([topic]) -> code, text
func clientHelp(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	r, err := c.Help(runCtx(L), L.OptString(2, ""))
	return replyOrRaise(L, r, err)
}

// clientNoop: c:noop() -> code, text
func clientNoop(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	r, err := c.Noop(runCtx(L))
	return replyOrRaise(L, r, err)
}

// clientRset: c:rset() -> code, text
func clientRset(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	r, err := c.Reset(runCtx(L))
	return replyOrRaise(L, r, err)
}

// clientQuit: c:quit() -> code, text; the connection is closed afterwards.
// Quitting a closed connection does nothing.
func clientQuit(L *lua.LState) int {
	lc := checkClient(L, 1)
	if lc.c == nil {
		return 0
	}
	r, err := lc.c.Quit(runCtx(L))
	lc.c = nil
	if err != nil && r.Code == 0 {
		// The session ended badly; there is nothing left to close.
		return 0
	}
	return pushReply(L, r)
}

// clientClose: c:close() closes without QUIT; safe to repeat.
func clientClose(L *lua.LState) int {
	lc := checkClient(L, 1)
	if lc.c != nil {
		lc.c.Close()
		lc.c = nil
	}
	return 0
}

// clientTLSInfo: c:tls_info() -> { version, cipher, server_name, peer = { {subject, issuer, not_after, sha256}, ... } } or nil
func clientTLSInfo(L *lua.LState) int {
	c := connected(L, checkClient(L, 1))
	st, ok := c.TLSConnectionState()
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	t := L.NewTable()
	t.RawSetString("version", lua.LString(tls.VersionName(st.Version)))
	t.RawSetString("cipher", lua.LString(tls.CipherSuiteName(st.CipherSuite)))
	t.RawSetString("server_name", lua.LString(st.ServerName))
	peers := L.NewTable()
	for _, cert := range st.PeerCertificates {
		ct := L.NewTable()
		ct.RawSetString("subject", lua.LString(cert.Subject.String()))
		ct.RawSetString("issuer", lua.LString(cert.Issuer.String()))
		ct.RawSetString("not_after", lua.LNumber(cert.NotAfter.Unix()))
		ct.RawSetString("sha256", lua.LString(smtp.FormatFingerprint(smtp.CertificateFingerprint(cert))))
		peers.Append(ct)
	}
	t.RawSetString("peer", peers)
	L.Push(t)
	return 1
}

// clientSetDebuglevel: c:set_debuglevel(n): 0 off, 1 transcript, 2 also message bodies.
func clientSetDebuglevel(L *lua.LState) int {
	lc := checkClient(L, 1)
	lvl := L.CheckInt(2)
	if lc.c == nil {
		return 0
	}
	if lvl <= 0 {
		if lc.dryTranscript != nil {
			lc.c.SetDebug(lc.dryTranscript, false)
		} else {
			lc.c.SetDebug(nil, false)
		}
		return 0
	}
	var w io.Writer
	if tl, ok := lc.dialer.Debug.(*transcriptLog); ok {
		w = tl
	} else {
		w = &transcriptLog{logger: slog.Default(), script: scriptName(L)}
	}
	if lc.dryTranscript != nil {
		// Keep the dry run's transcript file complete.
		w = io.MultiWriter(w, lc.dryTranscript)
	}
	lc.c.SetDebug(w, lvl >= 2)
	return 0
}

// transcriptLog turns transcript lines into log records.
type transcriptLog struct {
	logger *slog.Logger
	script string
	buf    []byte
}

func (t *transcriptLog) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	for {
		i := strings.IndexByte(string(t.buf), '\n')
		if i < 0 {
			break
		}
		line := string(t.buf[:i])
		t.buf = t.buf[i+1:]
		attrs := []any{"line", line}
		if t.script != "" {
			attrs = append(attrs, "script", t.script)
		}
		t.logger.Info("smtp transcript", attrs...)
	}
	return len(p), nil
}

var _ io.Writer = (*transcriptLog)(nil)

// SMTPErrorKind returns the Lua error kind of err: the name of the smtplib
// exception it corresponds to, or "timeout", "tls", "ValueError",
// "cancelled".
func SMTPErrorKind(err error) string {
	var (
		rr *smtp.RecipientsRefusedError
		sr *smtp.SenderRefusedError
		de *smtp.DataError
		he *smtp.HeloError
		ae *smtp.AuthError
		ns *smtp.NotSupportedError
		te *smtp.TLSError
		ce *smtp.ConnectError
		dc *smtp.DisconnectedError
		pe *smtp.ProtocolError
		se *smtp.SMTPError
		ad *smtp.AddressError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case smtp.IsTimeout(err):
		return "timeout"
	case errors.As(err, &te):
		return "tls"
	case errors.As(err, &rr):
		return "SMTPRecipientsRefused"
	case errors.As(err, &sr):
		return "SMTPSenderRefused"
	case errors.As(err, &de):
		return "SMTPDataError"
	case errors.As(err, &he):
		return "SMTPHeloError"
	case errors.As(err, &ae):
		return "SMTPAuthenticationError"
	case errors.As(err, &ns), errors.Is(err, smtp.ErrBinaryMIME):
		return "SMTPNotSupportedError"
	case errors.As(err, &ce):
		return "SMTPConnectError"
	case errors.As(err, &dc), errors.As(err, &pe), errors.Is(err, smtp.ErrClosed):
		return "SMTPServerDisconnected"
	case errors.As(err, &se):
		return "SMTPResponseException"
	case errors.As(err, &ad), strings.Contains(err.Error(), "injection"):
		return "ValueError"
	}
	return "SMTPException"
}

// raiseSMTP raises err as a structured Lua error table.
func raiseSMTP(L *lua.LState, err error) {
	L.Error(smtpErrorTable(L, err), 0)
}

// smtpErrorTable returns err as the structured error table raiseSMTP
// raises (c:send_batch returns it in a failed item's result).
func smtpErrorTable(L *lua.LState, err error) *lua.LTable {
	t := L.CreateTable(0, 8)
	detail := strings.TrimPrefix(err.Error(), "smtp: ")
	t.RawSetString("kind", lua.LString(SMTPErrorKind(err)))
	t.RawSetString("message", lua.LString(detail))
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		// The server's own words, as smtplib's smtp_error has them; the
		// context (command, code, what was refused) stays in the detail.
		t.RawSetString("message", lua.LString(se.ReplyText()))
		t.RawSetString("code", lua.LNumber(se.Code))
		if !se.Enhanced.IsZero() {
			t.RawSetString("enhanced", lua.LString(se.Enhanced.String()))
		}
		t.RawSetString("command", lua.LString(se.Command))
		t.RawSetString("temporary", lua.LBool(se.Temporary()))
	}
	var rr *smtp.RecipientsRefusedError
	if errors.As(err, &rr) {
		t.RawSetString("recipients", refusalsTable(L, rr.Recipients))
		t.RawSetString("temporary", lua.LBool(len(rr.Recipients.Permanent()) == 0))
	}
	var sr *smtp.SenderRefusedError
	if errors.As(err, &sr) {
		t.RawSetString("sender", lua.LString(sr.Sender))
	}
	var uo *smtp.UnknownOutcomeError
	if errors.As(err, &uo) {
		t.RawSetString("may_be_delivered", lua.LTrue)
	}
	var ae *smtp.AuthError
	if errors.As(err, &ae) && (ae.Step != "" || ae.OAuth2 != nil) {
		ot := L.CreateTable(0, 3)
		if ae.Step != "" {
			ot.RawSetString("step", lua.LString(ae.Step))
		}
		if ae.OAuth2 != nil {
			ot.RawSetString("status", lua.LString(ae.OAuth2.Status))
			if ae.OAuth2.Scope != "" {
				ot.RawSetString("scope", lua.LString(ae.OAuth2.Scope))
			}
		}
		t.RawSetString("oauth2", ot)
	}
	if where := luaWhere(L); where != "" {
		t.RawSetString("where", lua.LString(where))
	}
	// Each error gets its own metatable, carrying its detail next to the
	// shared __tostring.
	mt := L.CreateTable(0, 2)
	mt.RawSetString("__tostring", L.GetField(L.GetTypeMetatable(smtpErrorTypeName), "__tostring"))
	mt.RawSetString(errorDetailKey, lua.LString(detail))
	L.SetMetatable(t, mt)
	return t
}

// DescribeError renders a script error for logs and terminals. Errors
// raised as tables (the smtp module's structured errors) read
// "kind: message" instead of gopher-lua's "table: 0x...".
func DescribeError(err error) string {
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		return err.Error()
	}
	t, ok := ae.Object.(*lua.LTable)
	if !ok {
		return err.Error()
	}
	kind, msg := t.RawGetString("kind"), t.RawGetString("message")
	if kind == lua.LNil && msg == lua.LNil {
		return err.Error()
	}
	s := errorDetail(t)
	if kind != lua.LNil {
		s = kind.String() + ": " + s
	}
	if where, ok := t.RawGetString("where").(lua.LString); ok && where != "" {
		s = string(where) + ": " + s
	}
	return s
}

// luaWhere returns "file:line" of the innermost Lua (not Go) frame, so an
// error raised through pcall(c.sendmail, ...) still points at the script.
func luaWhere(L *lua.LState) string {
	for level := 1; level < 16; level++ {
		w := strings.TrimSuffix(L.Where(level), ":")
		if w != "" && !strings.HasPrefix(w, "[G]") {
			return w
		}
		if _, ok := L.GetStack(level); !ok {
			break
		}
	}
	return ""
}
