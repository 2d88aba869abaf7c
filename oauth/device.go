package oauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// deviceGrantType is RFC 8628's grant type for the token poll.
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// DeviceLogin runs the device authorization grant (RFC 8628): it asks the
// endpoint for a user code, writes the verification URL and the code to
// out, polls the token endpoint at the server's interval (5 s more after
// each slow_down) until the user has signed in, declined, or the code
// expired, and stores the tokens in the cache.
func (s *Source) DeviceLogin(ctx context.Context, out io.Writer) error {
	acct := s.cfg.Account
	if s.cfg.Grant != GrantRefreshToken {
		return &Error{Account: acct, Kind: KindConfig, Msg: fmt.Sprintf("oauth account %s uses grant %s, which needs no sign-in: mailbot gets its tokens with the client secret", acct, s.cfg.Grant)}
	}
	if s.cfg.endpoint.DeviceAuthURL == "" {
		return &Error{Account: acct, Kind: KindConfig, Msg: fmt.Sprintf("oauth account %s has no device authorization URL: set oauth2.device_authorization_url", acct)}
	}
	secret, err := s.clientSecret()
	if err != nil {
		return err
	}
	conf := s.oauth2Config(secret)
	da, err := conf.DeviceAuth(s.httpContext(ctx))
	if err != nil {
		return s.endpointError(err, "device authorization request", secret)
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return &Error{Account: acct, Kind: KindEndpoint, Msg: fmt.Sprintf("oauth account %s: the device authorization answer lacks device_code, user_code or verification_uri", acct)}
	}
	fmt.Fprintf(out, "To sign in account %s, open\n\n  %s\n\nand enter the code\n\n  %s\n\n", acct, da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(or open %s)\n\n", da.VerificationURIComplete)
	}
	fmt.Fprintf(out, "Waiting for the sign-in to finish...\n")

	interval := time.Duration(da.Interval) * time.Second
	if da.Interval <= 0 || da.Interval > 3600 {
		interval = 5 * time.Second // RFC 8628 section 3.2: default 5
	}
	expired := func() error {
		return &Error{Account: acct, Kind: KindDeviceExpired, Code: "expired_token",
			Msg: fmt.Sprintf("oauth account %s: expired_token: the code expired before the sign-in finished; %s again", acct, loginHint(acct))}
	}
	for {
		if !da.Expiry.IsZero() && !s.cfg.Now().Add(interval).Before(da.Expiry) {
			return expired()
		}
		if err := s.cfg.Wait(ctx, interval); err != nil {
			return fmt.Errorf("oauth account %s: waiting for the sign-in: %w", acct, err)
		}
		tok, code, desc, err := s.pollDevice(ctx, da.DeviceCode, secret)
		if err != nil {
			return &Error{Account: acct, Kind: KindEndpoint, Msg: fmt.Sprintf("oauth account %s: device token poll", acct), Err: scrubErr(err, []string{secret, da.DeviceCode})}
		}
		switch code {
		case "":
			if err := s.e.acquire(ctx); err != nil {
				return err
			}
			_, err := s.save(tok, "", false)
			s.e.release()
			if err != nil {
				return err
			}
			if tok.RefreshToken == "" {
				return &Error{Account: acct, Kind: KindConsent, Scopes: s.cfg.Scopes,
					Msg: fmt.Sprintf("oauth account %s: signed in, but the endpoint returned no refresh token, so mailbot cannot renew the access token; request offline access (Microsoft: scope offline_access)", acct)}
			}
			fmt.Fprintf(out, "Signed in. Tokens for account %s are stored in %s.\n", acct, s.e.path)
			return nil
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second // RFC 8628 section 3.5
		case "expired_token":
			return expired()
		case "access_denied", "authorization_declined": // the latter is Microsoft's
			return &Error{Account: acct, Kind: KindAccessDenied, Code: code,
				Msg: fmt.Sprintf("oauth account %s: access_denied: the sign-in was declined", acct)}
		default:
			return s.codeError(code, desc, 0, "device token poll", secret, da.DeviceCode)
		}
	}
}

// pollDevice makes one device-code token request. It returns the token,
// or the OAuth2 error code and description the endpoint answered.
func (s *Source) pollDevice(ctx context.Context, deviceCode, secret string) (*oauth2.Token, string, string, error) {
	form := url.Values{
		"grant_type":  {deviceGrantType},
		"device_code": {deviceCode},
		"client_id":   {s.cfg.ClientID},
	}
	if secret != "" {
		form.Set("client_secret", secret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, "", "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", "", err
	}
	var tr struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Scope        string          `json:"scope"`
		Error        string          `json:"error"`
		Description  string          `json:"error_description"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, "", "", fmt.Errorf("the token endpoint answered HTTP %d with no JSON", resp.StatusCode)
	}
	if tr.Error != "" {
		return nil, tr.Error, tr.Description, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 || tr.AccessToken == "" {
		return nil, "", "", fmt.Errorf("the token endpoint answered HTTP %d without a token", resp.StatusCode)
	}
	tok := &oauth2.Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType, RefreshToken: tr.RefreshToken}
	if n, err := strconv.ParseInt(strings.Trim(string(tr.ExpiresIn), `"`), 10, 64); err == nil && n > 0 {
		tok.ExpiresIn = n
	}
	if tr.Scope != "" {
		tok = tok.WithExtra(map[string]any{"scope": tr.Scope})
	}
	return tok, "", "", nil
}
