package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/ops"
	"github.com/mailbot/mailbot/outbox"
)

const statusDesc = `Shows what mailbot is doing: the triggers (as "mailbot triggers" lists
them), the outbox counts and the dead letters.

With an http section in the config, status asks the running daemon
(GET /api/status on http.listen, with http.auth's credentials): the
scripts it loaded, its live next runs, and its recent deliveries. When
no daemon answers there (connection refused), or without an http
section, status reads the same from the state directory instead, which
it does not change: the scripts are loaded as "mailbot check" does.

--json prints one object: source ("daemon" or "state_dir") and the
fields of GET /api/status: version, started, ready, ready_reason,
scripts [{path, hash, load_error}], triggers (the objects of "mailbot
triggers --json"), outbox {queued, dead, corrupt}, dead [{id, account,
recipients, subject, last_error, attempts}], recent [{time, account,
message_id, recipients, reply}].

Exit status 0; 1 when the daemon cannot be asked (other than not
running: e.g. refused credentials) or the state cannot be read;
2 for an invalid config file.`

// statusReport is what "mailbot status --json" prints.
type statusReport struct {
	// Source is "daemon" or "state_dir".
	Source string `json:"source"`
	ops.Status
}

// cmdStatus implements "mailbot status".
func (m *Main) cmdStatus(ctx context.Context, args []string) int {
	fs := m.newFlagSet("status", "[-c mailbot.yaml] [--json]", statusDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	asJSON := fs.Bool("json", false, "print JSON instead of tables")
	cfg, status, ok := m.flagsAndConfig(fs, args, cfgFlag)
	if !ok {
		return status
	}
	rep, loadErrs, err := m.daemonStatus(ctx, cfg)
	if errors.Is(err, errNoDaemon) {
		rep, loadErrs, err = m.stateStatus(cfg)
	}
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot status: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(m.Stderr, "mailbot status: %v\n", err)
			return exitFailure
		}
	} else {
		loc := time.Local
		if cfg.Timezone != "" {
			if l, err := time.LoadLocation(cfg.Timezone); err == nil {
				loc = l
			}
		}
		printStatus(m.Stdout, rep, loc)
	}
	for _, err := range loadErrs {
		fmt.Fprintf(m.Stderr, "mailbot status: %s\n", firstLine(luabind.DescribeError(err)))
	}
	return exitOK
}

// errNoDaemon means no daemon answers on http.listen (or there is none).
var errNoDaemon = errors.New("no daemon answers")

// daemonStatus asks the running daemon; errNoDaemon when none answers.
func (m *Main) daemonStatus(ctx context.Context, cfg *Config) (statusReport, []error, error) {
	if cfg.HTTP == nil {
		return statusReport{}, nil, errNoDaemon
	}
	// Without the credentials, a daemon that is not running can still
	// be told apart from one that refuses us.
	auth, authErr := cfg.httpAuth(m.lookupEnv)
	host, port, err := net.SplitHostPort(cfg.httpListen())
	if err != nil {
		return statusReport{}, nil, fmt.Errorf("http.listen: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: ask loopback
	}
	url := "http://" + net.JoinHostPort(host, port) + "/api/status"
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return statusReport{}, nil, err
	}
	switch {
	case auth.Token != "":
		req.Header.Set("Authorization", "Bearer "+auth.Token)
	case auth.Username != "":
		req.SetBasicAuth(auth.Username, auth.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return statusReport{}, nil, errNoDaemon
		}
		return statusReport{}, nil, fmt.Errorf("asking the daemon at %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return statusReport{}, nil, fmt.Errorf("asking the daemon at %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusUnauthorized && authErr != nil {
		return statusReport{}, nil, fmt.Errorf("the daemon at %s wants credentials: http.auth: %w", url, authErr)
	}
	if resp.StatusCode != http.StatusOK {
		return statusReport{}, nil, fmt.Errorf("the daemon at %s answered %s: %s", url, resp.Status, firstLine(strings.TrimSpace(string(body))))
	}
	rep := statusReport{Source: "daemon"}
	if err := json.Unmarshal(body, &rep.Status); err != nil {
		return statusReport{}, nil, fmt.Errorf("the daemon at %s: reading its answer: %w", url, err)
	}
	return rep, nil, nil
}

// stateStatus reads the status from the state directory, changing
// nothing.
func (m *Main) stateStatus(cfg *Config) (statusReport, []error, error) {
	rep := statusReport{Source: "state_dir", Status: ops.Status{Version: version(), ReadyReason: "no daemon running",
		Scripts: []ops.ScriptStatus{}, Triggers: []engine.TriggerInfo{}, Dead: []ops.DeadLetter{}, Recent: []ops.Delivery{}}}
	ecfg, err := listingEngineConfig(cfg, m.lookupEnv)
	if err != nil {
		return rep, nil, err
	}
	list, errs := engine.ListTriggers(ecfg, time.Now().Truncate(time.Second))
	if list != nil {
		rep.Triggers = list
	}
	ob, err := outbox.Open(filepath.Join(cfg.Resolve(cfg.StateDir), "outbox"), outbox.Options{SkipRecovery: true})
	if err != nil {
		return rep, errs, fmt.Errorf("outbox: %w", err)
	}
	defer ob.Close()
	counts, dead, err := outboxStatus(ob)
	if err != nil {
		return rep, errs, err
	}
	rep.Outbox, rep.Dead = counts, dead
	return rep, errs, nil
}

// printStatus writes the tables of "mailbot status".
func printStatus(w io.Writer, rep statusReport, loc *time.Location) {
	if rep.Source == "daemon" {
		ready := "ready"
		if !rep.Ready {
			ready = "not ready: " + rep.ReadyReason
		}
		fmt.Fprintf(w, "mailbot %s running since %s (%s)\n", rep.Version, rep.Started.In(loc).Format("2006-01-02 15:04:05 MST"), ready)
		for _, s := range rep.Scripts {
			if s.LoadError != "" {
				fmt.Fprintf(w, "script %s: load failed: %s\n", filepath.Base(s.Path), firstLine(s.LoadError))
			}
		}
	} else {
		fmt.Fprintln(w, "no daemon running: read from the state directory")
	}
	fmt.Fprintln(w)
	printTriggers(w, rep.Triggers, loc)
	fmt.Fprintf(w, "\noutbox: %d queued, %d dead, %d damaged\n", rep.Outbox.Queued, rep.Outbox.Dead, rep.Outbox.Corrupt)
	if len(rep.Dead) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEAD LETTER\tACCOUNT\tTO\tSUBJECT\tATTEMPTS\tLAST ERROR")
		for _, d := range rep.Dead {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.Account, strings.Join(d.Recipients, ","), orDash(printable(d.Subject)), d.Attempts, oneLineText(d.LastError))
		}
		tw.Flush()
	}
	if len(rep.Recent) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DELIVERED\tACCOUNT\tMESSAGE-ID\tTO\tREPLY")
		for i, d := range rep.Recent {
			if i == 10 {
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Time.In(loc).Format("2006-01-02 15:04:05"), d.Account, orDash(d.MessageID), strings.Join(d.Recipients, ","), orDash(oneLineText(d.Reply)))
		}
		tw.Flush()
	}
}
