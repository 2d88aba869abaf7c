// Command mailbot runs Lua mail-automation scripts and offers the tools
// around them: a daemon (run), a config and script checker (check), one-off
// script runs (exec), a trigger list (triggers), one trigger run now (fire),
// a swaks-like sender (send), a server inspector (probe)
// and a local development mail server (dev-server).
//
// Usage:
//
//	mailbot <command> [flags]
//
// Run "mailbot --help" for the list of commands and "mailbot <command>
// --help" for each command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/mailbot/mailbot/outbox"
)

// Exit statuses, shared by every command. send and exec report the SMTP
// stage that failed, as swaks does.
const (
	exitOK         = 0
	exitFailure    = 1 // script error, usage error, any other failure
	exitConfig     = 2 // the config file is invalid
	exitConnect    = 3 // connecting, greeting or EHLO failed
	exitTLS        = 4 // STARTTLS or the TLS handshake failed
	exitAuth       = 5 // authentication failed
	exitMail       = 6 // MAIL FROM: the sender was refused
	exitRcpt       = 7 // RCPT TO: recipients were refused
	exitData       = 8 // DATA: the message was refused
	exitDisconnect = 9 // timeout or lost connection
)

const exitStatusHelp = `Exit status:
  0  success
  1  script error, usage error or other failure
  2  invalid config file
  3  connect failed (TCP, greeting, EHLO)
  4  TLS failed (STARTTLS, handshake, certificate)
  5  authentication failed (also: no OAuth2 access token could be obtained)
  6  sender refused (MAIL FROM)
  7  recipients refused (RCPT TO)
  8  message refused (DATA)
  9  timeout or connection lost
`

// Env names the environment variables mailbot reads.
const (
	envConfig   = "MAILBOT_CONFIG"    // config file path when -c is absent
	envLogLevel = "MAILBOT_LOG_LEVEL" // overrides log.level
)

// Main holds the process's surroundings, so commands never reach for
// globals and tests could drive them in-process.
type Main struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	// LookupEnv reads the environment; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Hangup, when set, replaces SIGHUP for "mailbot run" (config
	// reload), so tests can ask for a reload in-process.
	Hangup <-chan os.Signal

	// outboxHooks, when set, adjusts the options of the outbox that
	// prepareScripts opens (run sets the metrics hooks).
	outboxHooks func(*outbox.Options)
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(m *Main, ctx context.Context, args []string) int
}

func commands() []command {
	return []command{
		{"run", "run the engine: watch scripts, fire triggers, deliver mail until stopped", (*Main).cmdRun},
		{"check", "validate the config file and compile every script", (*Main).cmdCheck},
		{"exec", "run one script's top-level code once", (*Main).cmdExec},
		{"test", "run the scripts' Lua tests (*_test.lua) with no network and no real state", (*Main).cmdTest},
		{"triggers", "list the triggers the scripts register, with next and last runs", (*Main).cmdTriggers},
		{"fire", "run one trigger's handler once, now (a file, a scheduled time)", (*Main).cmdFire},
		{"status", "show triggers, outbox counts and dead letters, from the running daemon or the state dir", (*Main).cmdStatus},
		{"send", "send one message, like swaks", (*Main).cmdSend},
		{"probe", "show what an SMTP server offers (EHLO, STARTTLS, AUTH, certificates)", (*Main).cmdProbe},
		{"dev-server", "run a local SMTP server with STARTTLS and AUTH that stores mail in a Maildir", (*Main).cmdDevServer},
		{"oauth", "sign in OAuth2 accounts (device flow) and show their token status", (*Main).cmdOAuth},
		{"queue", "inspect and manage the outbox: list, show, retry, delete, dead, requeue", (*Main).cmdQueue},
		{"dkim-record", "print the DNS TXT record for an account's DKIM key", (*Main).cmdDKIMRecord},
		{"health", "ask a running daemon's /healthz; exit 0 when healthy (container HEALTHCHECK)", (*Main).cmdHealth},
		{"version", "print mailbot's version", (*Main).cmdVersion},
	}
}

func main() {
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, LookupEnv: os.LookupEnv}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := m.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// Run dispatches to a subcommand and returns the exit status.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		m.usage(m.Stderr)
		return exitFailure
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			return m.Run(ctx, []string{args[1], "--help"})
		}
		m.usage(m.Stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(m, ctx, args[1:])
		}
	}
	fmt.Fprintf(m.Stderr, "mailbot: unknown command %q\n\n", name)
	m.usage(m.Stderr)
	return exitFailure
}

func (m *Main) usage(w io.Writer) {
	fmt.Fprintf(w, "mailbot: Lua-scriptable mail automation\n\nUsage:\n  mailbot <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"mailbot <command> --help\" for a command's flags.\n\nEnvironment:\n  %s    config file used when -c is not given\n  %s overrides log.level (debug, info, warn, error)\n", envConfig, envLogLevel)
}

// lookupEnv returns m.LookupEnv or the process environment.
func (m *Main) lookupEnv(name string) (string, bool) {
	if m.LookupEnv != nil {
		return m.LookupEnv(name)
	}
	return os.LookupEnv(name)
}

// newFlagSet makes a FlagSet whose --help prints usage, a description and
// the flags to stdout.
func (m *Main) newFlagSet(name, usage, desc string) *flag.FlagSet {
	fs := flag.NewFlagSet("mailbot "+name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: mailbot %s %s\n\n%s\n\nFlags:\n", name, usage, strings.TrimSpace(desc))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and handles --help (status 0, to stdout) and
// usage errors (status 1). ok is false when the command should return
// status at once.
func (m *Main) parseFlags(fs *flag.FlagSet, args []string) (status int, ok bool) {
	// flag calls Usage itself on --help and on errors; print it once,
	// here, to the right stream.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(m.Stdout)
			fs.Usage()
			return exitOK, false
		}
		fs.Usage()
		return exitFailure, false
	}
	return 0, true
}

// parseInterspersed parses flags that may follow positional arguments
// ("probe HOST --tls none"), returning the positionals in order.
func (m *Main) parseInterspersed(fs *flag.FlagSet, args []string) (pos []string, status int, ok bool) {
	for {
		if status, ok := m.parseFlags(fs, args); !ok {
			return nil, status, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		// flag stops at "--" and drops it: everything after is positional.
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints a usage problem and the command's usage line.
func (m *Main) usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(m.Stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fmt.Fprintf(m.Stderr, "Run \"%s --help\" for usage.\n", fs.Name())
	return exitFailure
}

// configPath returns the config file to use: the -c flag, else
// MAILBOT_CONFIG, else def (which may be "" for "no config").
func (m *Main) configPath(flagValue, def string) string {
	if flagValue != "" {
		return flagValue
	}
	if v, ok := m.lookupEnv(envConfig); ok && v != "" {
		return v
	}
	return def
}

// flagsAndConfig parses the flags of a subcommand that takes no
// arguments, then loads the config named by *cfgFlag (or $MAILBOT_CONFIG,
// or mailbot.yaml). ok is false when the command must exit with status.
func (m *Main) flagsAndConfig(fs *flag.FlagSet, args []string, cfgFlag *string) (cfg *Config, status int, ok bool) {
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return nil, status, false
	}
	if len(pos) > 0 {
		return nil, m.usageError(fs, "unexpected argument %q", pos[0]), false
	}
	return m.loadConfig(m.configPath(*cfgFlag, "mailbot.yaml"))
}

// loadConfig loads the config and prints its problems; status is exitConfig
// when it is unusable.
func (m *Main) loadConfig(path string) (*Config, int, bool) {
	cfg, err := LoadConfig(path)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				fmt.Fprintln(m.Stderr, p.String())
			}
		} else {
			fmt.Fprintf(m.Stderr, "mailbot: %v\n", err)
		}
		return nil, exitConfig, false
	}
	return cfg, 0, true
}

// optionalConfig loads the config named by the -c flag or $MAILBOT_CONFIG,
// if any (nil otherwise), and builds the logger; for commands that work
// without a config (exec, send). ok is false with the exit status to return.
func (m *Main) optionalConfig(cmd, flagValue string) (cfg *Config, logger *slog.Logger, status int, ok bool) {
	if p := m.configPath(flagValue, ""); p != "" {
		c, status, ok := m.loadConfig(p)
		if !ok {
			return nil, nil, status, false
		}
		cfg = c
	}
	logger, err := m.newLogger(cfg)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot %s: %v\n", cmd, err)
		return nil, nil, exitConfig, false
	}
	return cfg, logger, 0, true
}

// newLogger builds mailbot's logger on stderr from the config (nil for
// defaults), honouring MAILBOT_LOG_LEVEL.
func (m *Main) newLogger(cfg *Config) (*slog.Logger, error) {
	logger, _, err := m.newLevelLogger(cfg)
	return logger, err
}

// stringList is a repeatable flag; each value may also be comma separated.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if p := strings.TrimSpace(part); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// repeatFlag is a repeatable flag whose values are kept whole (file names
// may contain commas).
type repeatFlag []string

func (r *repeatFlag) String() string { return strings.Join(*r, " ") }

func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }

// dryRunFlag is --dry-run with an optional folder: "--dry-run" alone, or
// "--dry-run=DIR" ("--dry-run DIR" is rewritten to that form by
// splitDryRunArg before parsing).
type dryRunFlag struct {
	on  bool
	dir string
}

func (d *dryRunFlag) String() string {
	if d == nil || !d.on {
		return ""
	}
	return d.dir
}

func (d *dryRunFlag) Set(v string) error {
	d.on = true
	if v != "true" {
		d.dir = v
	}
	if v == "false" {
		d.on, d.dir = false, ""
	}
	return nil
}

// IsBoolFlag lets --dry-run stand alone.
func (d *dryRunFlag) IsBoolFlag() bool { return true }

// folder returns the dry-run output folder: the one given, else
// <state_dir>/dry-run with a config, else ./dry-run.
func (d *dryRunFlag) folder(cfg *Config) string {
	switch {
	case d.dir != "":
		return d.dir
	case cfg != nil:
		return filepath.Join(cfg.Resolve(cfg.StateDir), "dry-run")
	}
	return "dry-run"
}

// splitDryRunArg rewrites "--dry-run DIR" into "--dry-run=DIR" when the
// next argument is a folder rather than a flag or, for exec, the script:
// isValue decides.
func splitDryRunArg(args []string, isValue func(string) bool) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if (a == "--dry-run" || a == "-dry-run") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && isValue(args[i+1]) {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}
