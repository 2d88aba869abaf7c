// Package oauth obtains, caches and refreshes OAuth2 access tokens for SMTP
// accounts (Gmail, Microsoft 365 and any RFC 6749 token endpoint).
//
// A Source serves one account. It keeps the account's tokens in a cache
// file, <cache dir>/<account>.json, written atomically with mode 0600, and
// refreshes the access token shortly before it expires. All Sources of a
// process that share a cache file share one lock, so only one refresh per
// account runs at a time however many scripts and outbox workers ask.
//
// Grants: refresh_token (delegated access; the first refresh token comes
// from the device authorization grant, DeviceLogin, or from a seed such as
// an environment variable) and client_credentials (app-only access).
//
// No token, secret or encoding of one ever appears in an error, log
// record or String result of this package.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"
)

// Providers.
const (
	ProviderMicrosoft = "microsoft"
	ProviderGoogle    = "google"
	ProviderGeneric   = "generic"
)

// Grants.
const (
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// DefaultTenant is the Microsoft tenant used when none is configured: any
// work or school account.
const DefaultTenant = "organizations"

// ExpiryMargin is how long before its expiry an access token is refreshed.
const ExpiryMargin = 60 * time.Second

// Default scopes per provider and grant.
var (
	GoogleScopes                     = []string{"https://mail.google.com/"}
	MicrosoftScopes                  = []string{"https://outlook.office365.com/SMTP.Send", "offline_access"}
	MicrosoftClientCredentialsScopes = []string{"https://outlook.office365.com/.default"}
)

// Config describes one account's OAuth2 client.
type Config struct {
	// Account names the account; it names the cache file and appears in
	// messages ("run `mailbot oauth login ACCOUNT`").
	Account string
	// Provider is microsoft, google or generic.
	Provider string
	// Tenant is the Microsoft Entra tenant (domain or ID); default
	// "organizations".
	Tenant string
	// ClientID is the application (client) ID.
	ClientID string
	// ClientSecret returns the client secret at each request, so a rotated
	// secret is picked up; nil means a public client.
	ClientSecret func() (string, error)
	// Grant is refresh_token (default) or client_credentials.
	Grant string
	// Scopes requested; nil means the provider's default for the grant.
	Scopes []string
	// TokenURL and DeviceAuthURL replace the provider's endpoints; generic
	// needs TokenURL (and DeviceAuthURL for DeviceLogin).
	TokenURL      string
	DeviceAuthURL string
	// RefreshTokenSeed returns a refresh token to start from when the
	// cache holds none (for example from an environment variable). It may
	// return "" for none.
	RefreshTokenSeed func() (string, error)
	// CacheDir is the folder of the token cache files, typically
	// <state_dir>/oauth. It is created (mode 0700) on first write.
	CacheDir string
	// HTTPClient makes the token requests; default a client with a 30 s
	// timeout. Redirects to non-https, non-loopback URLs are refused.
	HTTPClient *http.Client
	// Logger receives one record per refresh (never a token); nil logs
	// nothing.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Wait pauses between device-flow polls; default a real timer that
	// ends early when ctx does. Tests make it return at once.
	Wait func(ctx context.Context, d time.Duration) error

	// reg, when set, replaces the process-wide registry (tests simulate
	// a restart with a fresh one).
	reg *registry
}

// DefaultScopes returns the scopes used when a config names none.
func DefaultScopes(provider, grant string) []string {
	switch provider {
	case ProviderGoogle:
		return append([]string(nil), GoogleScopes...)
	case ProviderMicrosoft:
		if grant == GrantClientCredentials {
			return append([]string(nil), MicrosoftClientCredentialsScopes...)
		}
		return append([]string(nil), MicrosoftScopes...)
	}
	return nil
}

// Endpoint returns the token and device-authorization URLs for a provider
// (tenant is Microsoft's; "" means DefaultTenant). Generic has none.
func Endpoint(provider, tenant string) oauth2.Endpoint {
	switch provider {
	case ProviderGoogle:
		return endpoints.Google
	case ProviderMicrosoft:
		if tenant == "" {
			tenant = DefaultTenant
		}
		return endpoints.AzureAD(tenant)
	}
	return oauth2.Endpoint{}
}

// CheckEndpoint reports whether rawURL may be used as a token endpoint:
// it must be an absolute https URL, or http to a loopback address
// (127.0.0.0/8, ::1, localhost).
func CheckEndpoint(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %w", rawURL, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", rawURL)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%s must use https (plain http is allowed only for loopback addresses)", rawURL)
	}
	return fmt.Errorf("%s must be an https URL", rawURL)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resolved is a checked Config with defaults applied.
type resolved struct {
	Config
	endpoint oauth2.Endpoint
}

// resolve checks c and fills in defaults.
func (c Config) resolve() (*resolved, error) {
	if c.Account == "" {
		return nil, errors.New("oauth: account name is empty")
	}
	if strings.ContainsAny(c.Account, `/\`) || c.Account == "." || c.Account == ".." {
		return nil, fmt.Errorf("oauth: account name %q cannot name a cache file", c.Account)
	}
	r := &resolved{Config: c}
	switch c.Provider {
	case ProviderMicrosoft, ProviderGoogle, ProviderGeneric:
	case "":
		return nil, fmt.Errorf("oauth account %s: provider is empty (want microsoft, google or generic)", c.Account)
	default:
		return nil, fmt.Errorf("oauth account %s: unknown provider %q (want microsoft, google or generic)", c.Account, c.Provider)
	}
	switch r.Grant {
	case "":
		r.Grant = GrantRefreshToken
	case GrantRefreshToken, GrantClientCredentials:
	default:
		return nil, fmt.Errorf("oauth account %s: unknown grant %q (want refresh_token or client_credentials)", c.Account, c.Grant)
	}
	if r.Grant == GrantClientCredentials && r.ClientSecret == nil {
		return nil, fmt.Errorf("oauth account %s: grant client_credentials needs a client secret", c.Account)
	}
	if c.ClientID == "" {
		return nil, fmt.Errorf("oauth account %s: client_id is empty", c.Account)
	}
	if r.Tenant == "" && c.Provider == ProviderMicrosoft {
		r.Tenant = DefaultTenant
	}
	r.endpoint = Endpoint(c.Provider, r.Tenant)
	if c.TokenURL != "" {
		r.endpoint.TokenURL = c.TokenURL
	}
	if c.DeviceAuthURL != "" {
		r.endpoint.DeviceAuthURL = c.DeviceAuthURL
	}
	if r.endpoint.TokenURL == "" {
		return nil, fmt.Errorf("oauth account %s: provider generic needs a token URL", c.Account)
	}
	if err := CheckEndpoint(r.endpoint.TokenURL); err != nil {
		return nil, fmt.Errorf("oauth account %s: token URL: %w", c.Account, err)
	}
	if r.endpoint.DeviceAuthURL != "" {
		if err := CheckEndpoint(r.endpoint.DeviceAuthURL); err != nil {
			return nil, fmt.Errorf("oauth account %s: device authorization URL: %w", c.Account, err)
		}
	}
	// Google reads the client secret only from the form; Microsoft takes
	// either. Sending it in the form avoids x/oauth2's probing, which
	// would post every refresh twice on a refusal.
	r.endpoint.AuthStyle = oauth2.AuthStyleInParams
	if r.Scopes == nil {
		r.Scopes = DefaultScopes(c.Provider, r.Grant)
	}
	if c.CacheDir == "" {
		return nil, fmt.Errorf("oauth account %s: cache folder is empty", c.Account)
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Wait == nil {
		r.Wait = realWait
	}
	r.HTTPClient = safeClient(c.HTTPClient)
	if r.reg == nil {
		r.reg = processRegistry
	}
	return r, nil
}

// safeClient copies hc (or a default client) with a redirect policy that
// keeps token requests on https or loopback.
func safeClient(hc *http.Client) *http.Client {
	var c http.Client
	if hc != nil {
		c = *hc
	} else {
		c.Timeout = 30 * time.Second
	}
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := CheckEndpoint(req.URL.String()); err != nil {
			return fmt.Errorf("refusing redirect: %w", err)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

func realWait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
