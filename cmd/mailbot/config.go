package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mailbot/mailbot/smtp"
)

// DevServerHost is the account host name that points an account at the
// embedded development server configured under dev_server.
const DevServerHost = "dev_server"

// Config is the content of mailbot.yaml. Decode it with LoadConfig: decoding
// is strict (unknown keys are errors) and starts from DefaultConfig, so keys
// that are absent keep their defaults.
//
// The structs deliberately have no UnmarshalYAML methods: yaml.v3 does not
// pass KnownFields on to custom unmarshalers, so a typo inside such a struct
// would be accepted silently. Checks live in Validate instead.
type Config struct {
	// ScriptsDir holds the Lua scripts; relative to the config file.
	ScriptsDir string `yaml:"scripts_dir"`
	// StateDir holds mailbot.state data, ledgers and dry-run output.
	StateDir string `yaml:"state_dir"`
	// Log selects the level and format of mailbot's own log.
	Log LogConfig `yaml:"log"`
	// Accounts are the named SMTP accounts scripts and send use.
	Accounts map[string]*AccountConfig `yaml:"accounts"`
	// DefaultAccount is used by smtp.connect() without host or account.
	DefaultAccount string `yaml:"default_account"`
	// Sandbox is "strict" (default) or "trusted".
	Sandbox string `yaml:"sandbox"`
	// FSRoots are the folders strict scripts' files may be in; nil means
	// the default (see fsRootsFor). Relative to the config file.
	FSRoots []string `yaml:"fs_roots"`
	// Workers bounds parallel script runs.
	Workers int `yaml:"workers"`
	// Timezone is the IANA zone for cron schedules; empty means local time.
	Timezone string `yaml:"timezone"`
	// RunTimeout bounds one run of a script handler.
	RunTimeout time.Duration `yaml:"run_timeout"`
	// Limits bounds the memory of one run (limits.memory).
	Limits LimitsConfig `yaml:"limits"`
	// DevServer, when present, makes run and exec start the embedded
	// development mail server in-process.
	DevServer *DevServerConfig `yaml:"dev_server"`
	// HTTP, when present, serves the operations endpoint (config_http.go).
	HTTP *HTTPConfig `yaml:"http"`
	// Databases are the named databases scripts open with sql.open
	// (config_databases.go).
	Databases map[string]*DatabaseConfig `yaml:"databases"`
	// HTTPClient bounds the scripts' http module (config_httpclient.go).
	HTTPClient *HTTPClientConfig `yaml:"http_client"`

	// path is the file the config was read from; dir its folder, against
	// which relative paths resolve.
	path string
	dir  string
	// root is the parsed document, kept to find the line of a key.
	root *yaml.Node
}

// LogConfig selects mailbot's log output.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// AccountConfig is one SMTP account. Secrets are never inline: the password
// comes from an environment variable or a file.
type AccountConfig struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	// Password exists only so that an inline password is reported with
	// advice rather than as an unknown key; Validate always rejects it.
	Password any `yaml:"password"`
	// PasswordEnv and PasswordFile are where the password is. The secret
	// tag registers them in the secret registry (see Config.SecretKeys):
	// scripts can read neither the variable nor the file.
	PasswordEnv  string `yaml:"password_env" secret:"env"`
	PasswordFile string `yaml:"password_file" secret:"file"`
	From         string `yaml:"from"`
	// Timeout bounds connecting and each command, e.g. "30s".
	Timeout           time.Duration `yaml:"timeout"`
	AllowInsecureAuth bool          `yaml:"allow_insecure_auth"`
	// CAFile is a PEM bundle that replaces the system roots.
	CAFile string `yaml:"ca_file"`
	// TLSFingerprint pins the server certificate's SHA-256.
	TLSFingerprint string `yaml:"tls_fingerprint"`
	// Concurrency is how many sessions the outbox opens in parallel for
	// this account (default 1); RateLimit caps its deliveries per second
	// (0: no cap).
	Concurrency int     `yaml:"concurrency"`
	RateLimit   float64 `yaml:"rate_limit"`
	// IdleTimeout is how long an outbox session with nothing to send
	// stays open for the next burst (default 30s; see
	// outbox.Account.IdleTimeout).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DKIM, when set, DKIM-signs every message sent with the account
	// (see DKIMConfig in config_dkim.go).
	DKIM *DKIMConfig `yaml:"dkim"`
	// Fallback lists the accounts the outbox delivers this account's
	// messages through, in order, when this one cannot open a session
	// (see outbox.Account.Fallback). Their own fallbacks are not followed.
	Fallback []string `yaml:"fallback"`
	// OAuth2, when present, makes the account log in with OAuth2 access
	// tokens that mailbot obtains and refreshes (see config_oauth.go).
	OAuth2 *OAuth2Config `yaml:"oauth2"`
	// Chunking: false sends with DATA even when the server offers
	// CHUNKING (see config_chunking.go).
	Chunking *bool `yaml:"chunking"`
}

// DevServerConfig configures the embedded development mail server.
type DevServerConfig struct {
	// Listen is the TCP address, default 127.0.0.1:2525.
	Listen string `yaml:"listen"`
	// Maildir receives every accepted message; relative to the config file.
	Maildir string `yaml:"maildir"`
	// Users maps AUTH user names to passwords. These are throwaway
	// development credentials; empty accepts any user and password.
	Users map[string]string `yaml:"users"`
	// AllowRemote permits a listen address other than loopback. The dev
	// server accepts any login, so exposing it must be a deliberate choice.
	AllowRemote bool `yaml:"allow_remote"`
}

// DefaultConfig returns the configuration used for keys a file leaves out.
func DefaultConfig() *Config {
	return &Config{
		Log:        LogConfig{Level: "info", Format: "text"},
		Sandbox:    "strict",
		Workers:    4,
		RunTimeout: 60 * time.Second,
	}
}

// Problem is one thing wrong with a config file or script, printed as
// "file:line: message".
type Problem struct {
	File string
	Line int
	// Key is the dotted path of the offending key, e.g. accounts.relay.port.
	Key string
	Msg string
}

// String formats the problem the way compilers do.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError carries every problem found in a config file. Commands exit
// with status 2 on it.
type ConfigError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// LoadConfig reads, strictly decodes and validates the config file at path.
// Problems in the file come back as a *ConfigError. Relative paths in the
// result are resolved against the file's folder.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Problems: []Problem{{File: path, Msg: fmt.Sprintf("cannot read config: %v", unwrapPathError(err))}}}
	}
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	if probs := cfg.Validate(); len(probs) > 0 {
		return cfg, &ConfigError{Problems: probs}
	}
	return cfg, nil
}

// ParseConfig decodes data (the content of the file at path) over
// DefaultConfig with unknown keys rejected. It does not validate values.
func ParseConfig(path string, data []byte) (*Config, error) {
	cfg, err := parseConfig(path, data)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseConfig is ParseConfig, except that when only some keys could not be
// decoded (unknown keys, wrong types) it also returns the config decoded
// from the others, for check to go on with.
func parseConfig(path string, data []byte) (*Config, error) {
	cfg := DefaultConfig()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config path %s: %w", path, err)
	}
	cfg.path, cfg.dir = path, filepath.Dir(abs)

	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &ConfigError{Problems: []Problem{yamlProblem(path, nil, err)}}
	}
	cfg.root = &root
	if len(root.Content) == 0 {
		return cfg, nil // an empty file: all defaults
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			probs := make([]Problem, 0, len(te.Errors))
			for _, msg := range te.Errors {
				probs = append(probs, yamlProblem(path, &root, errors.New(msg)))
			}
			return cfg, &ConfigError{Problems: probs}
		}
		return nil, &ConfigError{Problems: []Problem{yamlProblem(path, &root, err)}}
	}
	return cfg, nil
}

// Path returns the file the config was read from.
func (c *Config) Path() string { return c.path }

// Resolve makes p absolute against the config file's folder. Empty stays
// empty.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

var (
	yamlLineRE    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknownRE = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	yamlTypeRE    = regexp.MustCompile("^cannot unmarshal (\\S+) `(.*)` into (\\S+)$")
)

// yamlProblem turns a yaml.v3 message ("line 5: field x not found in type
// main.AccountConfig") into a Problem naming the key's dotted path.
func yamlProblem(file string, root *yaml.Node, err error) Problem {
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return Problem{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	p := Problem{File: file, Line: line, Msg: m[2]}
	if root == nil {
		return p
	}
	if u := yamlUnknownRE.FindStringSubmatch(m[2]); u != nil {
		p.Key = strings.Join(pathAtLine(root, line, u[1]), ".")
		p.Msg = "unknown key"
		if known := knownKeys(u[2]); len(known) > 0 {
			p.Msg += " (known keys: " + strings.Join(known, ", ") + ")"
		}
		return p
	}
	if t := yamlTypeRE.FindStringSubmatch(m[2]); t != nil {
		p.Key = strings.Join(pathAtLine(root, line, ""), ".")
		p.Msg = fmt.Sprintf("cannot use %q as %s", t[2], friendlyType(t[3]))
	}
	return p
}

// friendlyType names a Go type the way a config author thinks of it.
func friendlyType(goType string) string {
	switch goType {
	case "time.Duration":
		return "a duration (like \"30s\" or \"5m\")"
	case "int", "int64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	if strings.HasPrefix(goType, "map[") || strings.HasPrefix(goType, "main.") {
		return "a mapping of keys"
	}
	return goType
}

// configTypes maps type names in yaml.v3 messages to the structs, to list
// the keys a section accepts.
var configTypes = map[string]reflect.Type{
	"main.Config":          reflect.TypeFor[Config](),
	"main.LogConfig":       reflect.TypeFor[LogConfig](),
	"main.AccountConfig":   reflect.TypeFor[AccountConfig](),
	"main.DevServerConfig": reflect.TypeFor[DevServerConfig](),
	"main.DKIMConfig":      reflect.TypeFor[DKIMConfig](),
	"main.LimitsConfig":    reflect.TypeFor[LimitsConfig](),
}

func knownKeys(typeName string) []string {
	t, ok := configTypes[typeName]
	if !ok {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		// Fields of type any exist only to reject inline secrets.
		if tag == "" || tag == "-" || t.Field(i).Type.Kind() == reflect.Interface {
			continue
		}
		keys = append(keys, strings.Split(tag, ",")[0])
	}
	return keys
}

// pathAtLine finds the mapping key on the given line (named key, or any key
// when key is "") and returns its dotted path from the document root. When
// only a value sits on that line, the path of the key owning it is returned.
func pathAtLine(root *yaml.Node, line int, key string) []string {
	var found []string
	var walk func(n *yaml.Node, path []string) bool
	walk = func(n *yaml.Node, path []string) bool {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if walk(c, path) {
					return true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(append([]string(nil), path...), k.Value)
				if k.Line == line && (key == "" || k.Value == key) {
					found = p
					return true
				}
				if key == "" && v.Line == line && v.Kind == yaml.ScalarNode {
					found = p
					return true
				}
				if walk(v, p) {
					return true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := append(append([]string(nil), path...), strconv.Itoa(i))
				if c.Line == line && key == "" {
					found = p
					return true
				}
				if walk(c, p) {
					return true
				}
			}
		case yaml.AliasNode:
			// Aliases repeat content defined elsewhere; the definition's
			// line is reported there.
		}
		return false
	}
	walk(root, nil)
	if found == nil && key != "" {
		return []string{key}
	}
	return found
}

// lineOf returns the line of the key at path (e.g. "accounts", "relay",
// "port"). When the key is absent it returns the line of its nearest
// present ancestor, so a "missing key" problem points at the section it
// belongs in; 0 when not even the first key exists.
func lineOf(root *yaml.Node, path ...string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return 0
		}
		n = n.Content[0]
	}
	line := 0
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// problem builds a Problem for the key at path, with its line.
func (c *Config) problem(msg string, path ...string) Problem {
	return Problem{File: c.path, Line: lineOf(c.root, path...), Key: strings.Join(path, "."), Msg: msg}
}

// Validate checks values that decoding cannot: ranges, enumerations,
// references between keys, and that secrets are not inline. It does not
// touch the environment or the file system except to check that files it
// names can be read; see CheckSecrets for password sources.
func (c *Config) Validate() []Problem {
	var probs []Problem
	add := func(msg string, path ...string) { probs = append(probs, c.problem(msg, path...)) }

	for _, req := range []struct{ key, val, what string }{
		{"scripts_dir", c.ScriptsDir, "the folder of the *.lua scripts"},
		{"state_dir", c.StateDir, "the folder where mailbot keeps its ledger, outbox and mailbot.state"},
	} {
		switch {
		case req.val != "":
		case lineOf(c.root, req.key) == 0:
			// Absent: point at the top of the file, where it belongs.
			probs = append(probs, Problem{File: c.path, Line: 1, Key: req.key, Msg: "missing required value: " + req.what})
		default:
			add("must not be empty", req.key)
		}
	}
	probs = append(probs, c.validateFSRoots()...)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(fmt.Sprintf("unknown level %q (want debug, info, warn or error)", c.Log.Level), "log", "level")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add(fmt.Sprintf("unknown format %q (want text or json)", c.Log.Format), "log", "format")
	}
	switch c.Sandbox {
	case "strict", "trusted":
	default:
		add(fmt.Sprintf("unknown sandbox %q (want strict or trusted)", c.Sandbox), "sandbox")
	}
	if c.Workers < 1 {
		add("must be at least 1", "workers")
	}
	if c.RunTimeout <= 0 {
		add("must be a positive duration", "run_timeout")
	}
	probs = append(probs, c.validateLimits()...)
	probs = append(probs, c.validateHTTP()...)
	probs = append(probs, c.validateDatabases()...)
	probs = append(probs, c.validateHTTPClient()...)
	if c.Timezone != "" {
		if _, err := time.LoadLocation(c.Timezone); err != nil {
			add(fmt.Sprintf("unknown time zone %q", c.Timezone), "timezone")
		}
	}
	if c.DefaultAccount != "" {
		if _, ok := c.Accounts[c.DefaultAccount]; !ok {
			add(fmt.Sprintf("no account named %q under accounts", c.DefaultAccount), "default_account")
		}
	}
	if c.DevServer != nil {
		if msg := checkDevListen(c.DevServer.Listen, c.DevServer.AllowRemote); msg != "" {
			add(msg, "dev_server", "listen")
		}
		for user := range c.DevServer.Users {
			if user == "" || strings.ContainsAny(user, "\r\n\x00") {
				add("user names must be non-empty and contain no CR, LF or NUL", "dev_server", "users")
			}
		}
	}
	names := make([]string, 0, len(c.Accounts))
	for name := range c.Accounts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		probs = append(probs, c.validateAccount(name, c.Accounts[name])...)
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
	return probs
}

func (c *Config) validateAccount(name string, a *AccountConfig) []Problem {
	var probs []Problem
	add := func(msg string, key ...string) {
		probs = append(probs, c.problem(msg, append([]string{"accounts", name}, key...)...))
	}
	if a == nil {
		add("empty account; it needs at least a host")
		return probs
	}
	if a.Password != nil {
		add("inline passwords are not allowed; use password_env (an environment variable) or password_file (a file readable only by mailbot)", "password")
	}
	for _, kv := range [][2]string{{"host", a.Host}, {"username", a.Username}, {"from", a.From}, {"password_env", a.PasswordEnv}} {
		if strings.ContainsAny(kv[1], "\r\n\x00") {
			add("must not contain CR, LF or NUL", kv[0])
		}
	}
	if a.Host == "" {
		add("missing required value", "host")
	} else if a.Host == DevServerHost && c.DevServer == nil {
		add("host dev_server needs a dev_server section", "host")
	}
	if a.Port != 0 && (a.Port < 1 || a.Port > 65535) {
		add("must be 1-65535", "port")
	}
	if a.TLS != "" {
		if _, err := smtp.ParseTLSMode(a.TLS); err != nil {
			add(fmt.Sprintf("unknown mode %q (want starttls, implicit, none or starttls-if-offered)", a.TLS), "tls")
		}
	}
	if a.PasswordEnv != "" && a.PasswordFile != "" {
		add("set only one of password_env and password_file", "password_file")
	}
	if a.From != "" {
		if _, err := mail.ParseAddress(a.From); err != nil {
			add(fmt.Sprintf("invalid address %q: %v", a.From, err), "from")
		}
	}
	if a.Timeout < 0 {
		add("must not be negative", "timeout")
	}
	if a.Concurrency < 0 || a.Concurrency > 100 {
		add("must be 0-100 (0 means 1)", "concurrency")
	}
	if a.RateLimit < 0 {
		add("must not be negative (0 means no limit)", "rate_limit")
	}
	if a.IdleTimeout < 0 || a.IdleTimeout > 10*time.Minute {
		add("must be 0-10m (0 means the default, 30s)", "idle_timeout")
	}
	if a.CAFile != "" {
		if _, err := loadCAFile(c.Resolve(a.CAFile)); err != nil {
			add(err.Error(), "ca_file")
		}
	}
	if a.TLSFingerprint != "" {
		if _, err := smtp.ParseFingerprint(a.TLSFingerprint); err != nil {
			add("want a SHA-256 fingerprint: 64 hex digits, colons allowed", "tls_fingerprint")
		}
	}
	probs = append(probs, c.validateDKIM(name, a)...)
	probs = append(probs, c.validateFallback(name, a)...)
	probs = append(probs, c.validateOAuth2(name, a)...)
	return probs
}

// CheckSecrets reports password sources that cannot deliver a password now:
// an unset environment variable or an unreadable password file. check
// treats them as problems; run logs them and starts anyway, so only that
// account's logins fail.
func (c *Config) CheckSecrets(getenv func(string) (string, bool)) []Problem {
	var probs []Problem
	names := make([]string, 0, len(c.Accounts))
	for name := range c.Accounts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a := c.Accounts[name]
		if a == nil {
			continue
		}
		switch {
		case a.OAuth2 != nil:
			probs = append(probs, c.checkOAuth2Secrets(name, a.OAuth2, getenv)...)
		case a.PasswordEnv != "":
			if v, ok := getenv(a.PasswordEnv); !ok || v == "" {
				probs = append(probs, c.problem(fmt.Sprintf("environment variable %s is not set", a.PasswordEnv), "accounts", name, "password_env"))
			}
		case a.PasswordFile != "":
			if _, err := readPasswordFile(c.Resolve(a.PasswordFile)); err != nil {
				probs = append(probs, c.problem(err.Error(), "accounts", name, "password_file"))
			}
		case a.Username != "" && a.Host != DevServerHost:
			probs = append(probs, c.problem("username is set but there is no password_env or password_file", "accounts", name))
		}
	}
	probs = append(probs, c.checkHTTPSecrets(getenv)...)
	probs = append(probs, c.checkDatabaseSecrets(getenv)...)
	return probs
}

// readPasswordFile returns the first line of a password file, without the
// line end, so files written with echo work.
func readPasswordFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read password file: %w", unwrapPathError(err))
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return pw, nil
}

// loadCAFile reads a PEM bundle into a pool.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read CA file: %w", unwrapPathError(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// unwrapPathError drops the *fs.PathError's op, keeping "path: cause".
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
