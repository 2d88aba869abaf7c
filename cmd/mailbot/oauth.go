package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailbot/mailbot/oauth"
)

const oauthDesc = `Manages the OAuth2 tokens of accounts with an oauth2 section.

  oauth login ACCOUNT     sign in with the device authorization grant: prints a
                          URL and a code to enter there (in any browser, on any
                          device), waits until the sign-in is done, and stores
                          the tokens in <state_dir>/oauth/ACCOUNT.json (mode 0600)
  oauth status [ACCOUNT]  per account: grant, scopes, access-token expiry, and
                          whether a refresh token is cached (never a token)

Accounts with grant client_credentials need no login: mailbot gets their
tokens with the client secret. After a login, "mailbot run", "mailbot send
--account" and scripts' c:login() refresh the access token by themselves;
run "oauth login" again only when told the refresh token was revoked.`

// cmdOAuth implements "mailbot oauth".
func (m *Main) cmdOAuth(ctx context.Context, args []string) int {
	fs := m.newFlagSet("oauth", "[-c mailbot.yaml] login ACCOUNT | status [ACCOUNT]", oauthDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	if len(pos) == 0 {
		return m.usageError(fs, "missing the action (login or status)")
	}
	action, rest := pos[0], pos[1:]
	switch action {
	case "login":
		if len(rest) != 1 {
			return m.usageError(fs, "oauth login takes one account name")
		}
	case "status":
		if len(rest) > 1 {
			return m.usageError(fs, "oauth status takes at most one account name")
		}
	default:
		return m.usageError(fs, "unknown action %q (want login or status)", action)
	}
	cfg, status, ok := m.loadConfig(m.configPath(*cfgFlag, "mailbot.yaml"))
	if !ok {
		return status
	}
	if action == "login" {
		return m.oauthLogin(ctx, cfg, rest[0])
	}
	return m.oauthStatus(ctx, cfg, rest)
}

// oauthAccount finds an account and checks it has an oauth2 section.
func (m *Main) oauthAccount(cfg *Config, name string) (*oauth.Source, bool) {
	a, ok := cfg.Accounts[name]
	if !ok || a == nil {
		fmt.Fprintf(m.Stderr, "mailbot oauth: no account named %q in %s\n", name, cfg.Path())
		return nil, false
	}
	if a.OAuth2 == nil {
		fmt.Fprintf(m.Stderr, "mailbot oauth: account %s has no oauth2 section; it logs in with a password\n", name)
		return nil, false
	}
	// Not logged: login and status print what happened themselves.
	src, err := cfg.oauthSource(name, m.lookupEnv, nil)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot oauth: %v\n", err)
		return nil, false
	}
	return src, true
}

func (m *Main) oauthLogin(ctx context.Context, cfg *Config, name string) int {
	src, ok := m.oauthAccount(cfg, name)
	if !ok {
		return exitFailure
	}
	if !src.HasDeviceFlow() {
		if src.Grant() == oauth.GrantClientCredentials {
			fmt.Fprintf(m.Stderr, "mailbot oauth: account %s uses grant client_credentials, which needs no login: mailbot gets its tokens with the client secret\n", name)
		} else {
			fmt.Fprintf(m.Stderr, "mailbot oauth: account %s has no device flow: set oauth2.device_authorization_url (provider generic), or seed the cache with refresh_token_env or refresh_token_file\n", name)
		}
		return exitFailure
	}
	if err := src.DeviceLogin(ctx, m.Stdout); err != nil {
		fmt.Fprintf(m.Stderr, "mailbot oauth login: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func (m *Main) oauthStatus(ctx context.Context, cfg *Config, only []string) int {
	var names []string
	if len(only) == 1 {
		names = only
	} else {
		for name, a := range cfg.Accounts {
			if a != nil && a.OAuth2 != nil {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			fmt.Fprintf(m.Stdout, "no account in %s has an oauth2 section\n", cfg.Path())
			return exitOK
		}
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tGRANT\tSCOPES\tACCESS TOKEN\tREFRESH TOKEN")
	code := exitOK
	for _, name := range names {
		src, ok := m.oauthAccount(cfg, name)
		if !ok {
			code = exitFailure
			continue
		}
		st, err := src.Status(ctx)
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot oauth status: %v\n", err)
			code = exitFailure
			continue
		}
		access := "none"
		now := time.Now()
		switch {
		case !st.AccessToken:
		case st.AccessTokenExpiry.IsZero():
			access = "cached, expiry unknown"
		case st.AccessTokenExpiry.After(now):
			access = fmt.Sprintf("expires %s (in %s)", st.AccessTokenExpiry.Local().Format(time.RFC3339), st.AccessTokenExpiry.Sub(now).Round(time.Second))
		default:
			access = fmt.Sprintf("expired %s", st.AccessTokenExpiry.Local().Format(time.RFC3339))
		}
		refresh := "no"
		switch {
		case st.Grant == oauth.GrantClientCredentials:
			refresh = "not used"
		case st.RefreshToken:
			refresh = "yes"
		case cfg.Accounts[name].OAuth2.RefreshTokenEnv != "" || cfg.Accounts[name].OAuth2.RefreshTokenFile != "":
			refresh = "no: seeded from refresh_token_env/_file on first use"
		default:
			refresh = "no: run `mailbot oauth login " + name + "`"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, st.Grant, strings.Join(st.Scopes, " "), access, refresh)
	}
	tw.Flush()
	return code
}
