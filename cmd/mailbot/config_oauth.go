package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/oauth"
)

// OAuth2Config is an account's oauth2 section: the account logs in with
// an OAuth2 access token that mailbot obtains and refreshes, instead of a
// password. Secrets (client secret, refresh token) come only from *_env or
// *_file keys, or from the token cache that `mailbot oauth login` writes.
type OAuth2Config struct {
	// Provider is microsoft, google or generic.
	Provider string `yaml:"provider"`
	// Tenant is the Microsoft tenant (domain or ID); default organizations.
	Tenant   string `yaml:"tenant"`
	ClientID string `yaml:"client_id"`
	// ClientSecret and RefreshToken exist only so that an inline secret is
	// reported with advice rather than as an unknown key; Validate always
	// rejects them.
	ClientSecret     any    `yaml:"client_secret"`
	ClientSecretEnv  string `yaml:"client_secret_env" secret:"env"`
	ClientSecretFile string `yaml:"client_secret_file" secret:"file"`
	// Grant is refresh_token (default) or client_credentials.
	Grant string `yaml:"grant"`
	// Scopes replace the provider's default scopes.
	Scopes []string `yaml:"scopes"`
	// Mechanism is the SASL mechanism: XOAUTH2 (default) or OAUTHBEARER.
	Mechanism        string `yaml:"mechanism"`
	RefreshToken     any    `yaml:"refresh_token"`
	RefreshTokenEnv  string `yaml:"refresh_token_env" secret:"env"`
	RefreshTokenFile string `yaml:"refresh_token_file" secret:"file"`
	// TokenURL and DeviceAuthorizationURL are the endpoints of a generic
	// provider; for microsoft and google they replace the presets.
	TokenURL               string `yaml:"token_url"`
	DeviceAuthorizationURL string `yaml:"device_authorization_url"`
}

func init() {
	configTypes["main.OAuth2Config"] = reflect.TypeFor[OAuth2Config]()
}

// oauthCacheDir is the folder of the token caches under state_dir.
const oauthCacheDir = "oauth"

// mechanism returns the SASL mechanism, upper case, default XOAUTH2.
func (o *OAuth2Config) mechanism() string {
	if o.Mechanism == "" {
		return "XOAUTH2"
	}
	return strings.ToUpper(o.Mechanism)
}

// validateOAuth2 checks an account's oauth2 section.
func (c *Config) validateOAuth2(name string, a *AccountConfig) []Problem {
	o := a.OAuth2
	if o == nil {
		return nil
	}
	var probs []Problem
	add := func(msg string, key ...string) {
		probs = append(probs, c.problem(msg, append([]string{"accounts", name, "oauth2"}, key...)...))
	}
	if a.PasswordEnv != "" || a.PasswordFile != "" {
		key := "password_env"
		if a.PasswordFile != "" {
			key = "password_file"
		}
		probs = append(probs, c.problem("an account with oauth2 logs in with a token, not a password: remove "+key+" or the oauth2 section", "accounts", name, key))
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		add("an account with oauth2 needs a name that can name its token cache file (no / or \\)")
	}
	if o.ClientSecret != nil {
		add("inline client secrets are not allowed; use client_secret_env (an environment variable) or client_secret_file (a file readable only by mailbot)", "client_secret")
	}
	if o.RefreshToken != nil {
		add("inline refresh tokens are not allowed; run `mailbot oauth login "+name+"` (it stores the token in state_dir/oauth), or use refresh_token_env or refresh_token_file", "refresh_token")
	}
	for _, kv := range [][2]string{{"tenant", o.Tenant}, {"client_id", o.ClientID}, {"client_secret_env", o.ClientSecretEnv}, {"refresh_token_env", o.RefreshTokenEnv}} {
		if strings.ContainsAny(kv[1], "\r\n\x00") {
			add("must not contain CR, LF or NUL", kv[0])
		}
	}
	switch o.Provider {
	case oauth.ProviderMicrosoft, oauth.ProviderGoogle, oauth.ProviderGeneric:
	case "":
		add("missing required value (microsoft, google or generic)", "provider")
	default:
		add(fmt.Sprintf("unknown provider %q (want microsoft, google or generic)", o.Provider), "provider")
	}
	grant := o.Grant
	switch grant {
	case "":
		grant = oauth.GrantRefreshToken
	case oauth.GrantRefreshToken, oauth.GrantClientCredentials:
	default:
		add(fmt.Sprintf("unknown grant %q (want refresh_token or client_credentials)", o.Grant), "grant")
	}
	switch o.mechanism() {
	case "XOAUTH2", "OAUTHBEARER":
	default:
		add(fmt.Sprintf("unknown mechanism %q (want XOAUTH2 or OAUTHBEARER)", o.Mechanism), "mechanism")
	}
	if o.ClientID == "" {
		add("missing required value: the application (client) ID of the app registration", "client_id")
	}
	if o.Tenant != "" && o.Provider != oauth.ProviderMicrosoft {
		add("tenant applies only to provider microsoft", "tenant")
	}
	if o.ClientSecretEnv != "" && o.ClientSecretFile != "" {
		add("set only one of client_secret_env and client_secret_file", "client_secret_file")
	}
	if o.RefreshTokenEnv != "" && o.RefreshTokenFile != "" {
		add("set only one of refresh_token_env and refresh_token_file", "refresh_token_file")
	}
	if grant == oauth.GrantClientCredentials {
		if o.ClientSecretEnv == "" && o.ClientSecretFile == "" {
			add("grant client_credentials needs client_secret_env or client_secret_file", "grant")
		}
		if o.RefreshTokenEnv != "" || o.RefreshTokenFile != "" {
			add("grant client_credentials uses no refresh token: remove refresh_token_env/refresh_token_file", "grant")
		}
		switch {
		case o.Provider == oauth.ProviderGoogle:
			add("Google offers no client_credentials grant for Gmail: use grant refresh_token", "grant")
		case o.Provider == oauth.ProviderMicrosoft && (o.Tenant == "" || o.Tenant == "organizations" || o.Tenant == "common" || o.Tenant == "consumers"):
			add("grant client_credentials needs your tenant (domain or ID), not "+cmpOr(o.Tenant, oauth.DefaultTenant), "tenant")
		}
	}
	if o.Provider == oauth.ProviderGeneric && o.TokenURL == "" {
		add("provider generic needs token_url", "token_url")
	}
	for _, kv := range [][2]string{{"token_url", o.TokenURL}, {"device_authorization_url", o.DeviceAuthorizationURL}} {
		if kv[1] == "" {
			continue
		}
		if err := oauth.CheckEndpoint(kv[1]); err != nil {
			add(err.Error(), kv[0])
		}
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\x00") {
			add("a scope must be non-empty and contain no space (list each scope on its own)", "scopes", fmt.Sprint(i))
		}
	}
	if o.Scopes != nil && len(o.Scopes) == 0 {
		add("must list at least one scope (leave it out for the provider's default)", "scopes")
	}
	return probs
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkOAuth2Secrets reports oauth2 secret sources that cannot deliver
// now, and a refresh-token account with nothing to start from.
func (c *Config) checkOAuth2Secrets(name string, o *OAuth2Config, getenv func(string) (string, bool)) []Problem {
	var probs []Problem
	path := []string{"accounts", name, "oauth2"}
	if msg := secretSourceProblem(c, o.ClientSecretEnv, o.ClientSecretFile, getenv); msg != "" {
		key := "client_secret_env"
		if o.ClientSecretFile != "" {
			key = "client_secret_file"
		}
		probs = append(probs, c.problem(msg, append(path, key)...))
	}
	if o.Grant == oauth.GrantClientCredentials {
		return probs
	}
	cached := false
	if _, err := os.Stat(c.oauthCachePath(name)); err == nil {
		cached = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		probs = append(probs, c.problem(fmt.Sprintf("cannot read the token cache: %v", unwrapPathError(err)), path...))
	}
	if cached {
		return probs
	}
	if o.RefreshTokenEnv == "" && o.RefreshTokenFile == "" {
		return append(probs, c.problem("no refresh token yet: run `mailbot oauth login "+name+"`", path...))
	}
	if msg := secretSourceProblem(c, o.RefreshTokenEnv, o.RefreshTokenFile, getenv); msg != "" {
		key := "refresh_token_env"
		if o.RefreshTokenFile != "" {
			key = "refresh_token_file"
		}
		probs = append(probs, c.problem(msg+", and no token is cached: run `mailbot oauth login "+name+"`", append(path, key)...))
	}
	return probs
}

// secretSourceProblem says why an env/file secret source cannot deliver,
// or "" when it can or none is named.
func secretSourceProblem(c *Config, env, file string, getenv func(string) (string, bool)) string {
	switch {
	case env != "":
		if v, ok := getenv(env); !ok || v == "" {
			return fmt.Sprintf("environment variable %s is not set", env)
		}
	case file != "":
		if _, err := readSecretFile(c.Resolve(file)); err != nil {
			return err.Error()
		}
	}
	return ""
}

// readSecretFile returns the first line of a secret file.
func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read secret file: %w", unwrapPathError(err))
	}
	s, _, _ := strings.Cut(string(data), "\n")
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

// secretFunc returns a function reading the env/file secret source, or
// nil when none is named.
func secretFunc(c *Config, env, file string, getenv func(string) (string, bool)) func() (string, error) {
	switch {
	case env != "":
		return func() (string, error) {
			if v, ok := getenv(env); ok && v != "" {
				return strings.TrimSpace(v), nil
			}
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
	case file != "":
		path := c.Resolve(file)
		return func() (string, error) { return readSecretFile(path) }
	}
	return nil
}

// addOAuthSecrets registers the token cache of every OAuth2 account as a
// secret file, so that not even a trusted script can read the tokens.
func (c *Config) addOAuthSecrets(reg *luabind.Secrets) {
	for name, a := range c.Accounts {
		if a != nil && a.OAuth2 != nil {
			reg.AddFile(c.oauthCachePath(name), "account "+name, secretHints["accounts"])
		}
	}
}

// oauthCachePath is the token cache file of an account.
func (c *Config) oauthCachePath(name string) string {
	return filepath.Join(c.Resolve(c.StateDir), oauthCacheDir, name+".json")
}

// oauthConfig builds the oauth.Config of an account's oauth2 section;
// logger (nil: none) receives one record per token obtained.
func (c *Config) oauthConfig(name string, o *OAuth2Config, getenv func(string) (string, bool), logger *slog.Logger) oauth.Config {
	return oauth.Config{
		Account:          name,
		Provider:         o.Provider,
		Tenant:           o.Tenant,
		ClientID:         o.ClientID,
		ClientSecret:     secretFunc(c, o.ClientSecretEnv, o.ClientSecretFile, getenv),
		Grant:            o.Grant,
		Scopes:           o.Scopes,
		TokenURL:         o.TokenURL,
		DeviceAuthURL:    o.DeviceAuthorizationURL,
		RefreshTokenSeed: secretFunc(c, o.RefreshTokenEnv, o.RefreshTokenFile, getenv),
		CacheDir:         filepath.Join(c.Resolve(c.StateDir), oauthCacheDir),
		Logger:           logger,
	}
}

// oauthSource builds the token source of an account with an oauth2
// section, logging its refreshes to logger (nil: not logged).
func (c *Config) oauthSource(name string, getenv func(string) (string, bool), logger *slog.Logger) (*oauth.Source, error) {
	a := c.Accounts[name]
	if a == nil || a.OAuth2 == nil {
		return nil, fmt.Errorf("account %s has no oauth2 section", name)
	}
	return oauth.New(c.oauthConfig(name, a.OAuth2, getenv, logger))
}
