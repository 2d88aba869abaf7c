package oauth

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/oauth/oauthtest"
)

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// waits records the device-flow pauses without sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) Wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d = append(w.d, d)
	return ctx.Err()
}

func TestDeviceLogin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		steps     []string
		wantWaits []time.Duration
		wantErr   error
	}{
		{"immediate", nil, []time.Duration{2 * time.Second}, nil},
		{"pending then slow_down", []string{"authorization_pending", "slow_down", "authorization_pending"},
			[]time.Duration{2 * time.Second, 2 * time.Second, 7 * time.Second, 7 * time.Second}, nil},
		{"declined", []string{"authorization_pending", "access_denied"}, []time.Duration{2 * time.Second, 2 * time.Second}, ErrAccessDenied},
		{"expired", []string{"expired_token"}, []time.Duration{2 * time.Second}, ErrDeviceExpired},
		{"declined at Microsoft", []string{"authorization_declined"}, []time.Duration{2 * time.Second}, ErrAccessDenied},
		{"code refused", []string{"invalid_grant"}, []time.Duration{2 * time.Second}, ErrInvalidGrant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := oauthtest.NewServer()
			defer idp.Close()
			idp.DeviceSteps = tc.steps
			idp.DeviceInterval = 2
			w := &waits{}
			cfg := testConfig(idp, t.TempDir(), newClock())
			cfg.Wait = w.Wait
			s := mustNew(t, cfg)
			var out bytes.Buffer
			err := s.DeviceLogin(context.Background(), &out)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := w.d; len(got) != len(tc.wantWaits) || (len(got) > 0 && !equalDurations(got, tc.wantWaits)) {
				t.Fatalf("waits = %v, want %v", got, tc.wantWaits)
			}
			if !strings.Contains(out.String(), idp.URL+"/activate") || !strings.Contains(out.String(), "WDJB-MJHT") {
				t.Fatalf("output lacks URL or code:\n%s", out.String())
			}
			st, _ := s.Status(context.Background())
			if st.RefreshToken != (tc.wantErr == nil) {
				t.Fatalf("refresh token cached = %v", st.RefreshToken)
			}
			if tc.wantErr != nil {
				return
			}
			// The login's tokens are used without another request.
			tok, err := s.Token(context.Background())
			if err != nil || !idp.ValidAccess(tok) || idp.Requests("refresh_token") != 0 {
				t.Fatalf("Token after login: %v (refreshes %d)", err, idp.Requests("refresh_token"))
			}
			assertNoSecret(t, "login output", out.String(), tok)
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeviceLoginCancelled(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.DeviceSteps = []string{"authorization_pending", "authorization_pending", "authorization_pending"}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := testConfig(idp, t.TempDir(), newClock())
	n := 0
	cfg.Wait = func(ctx context.Context, d time.Duration) error {
		if n++; n == 2 {
			cancel()
		}
		return ctx.Err()
	}
	err := mustNew(t, cfg).DeviceLogin(ctx, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestDeviceLoginNotOffered(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	cfg := testConfig(idp, t.TempDir(), newClock())
	cfg.DeviceAuthURL = ""
	err := mustNew(t, cfg).DeviceLogin(context.Background(), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "device_authorization_url") {
		t.Fatalf("err = %v", err)
	}
	cfg = testConfig(idp, t.TempDir(), newClock())
	cfg.Grant, cfg.ClientSecret = GrantClientCredentials, seed("x-secret")
	err = mustNew(t, cfg).DeviceLogin(context.Background(), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "needs no sign-in") {
		t.Fatalf("err = %v", err)
	}
}

// With a real-time Wait and a 1 s interval the flow still finishes; this
// keeps the default Wait covered.
func TestRealWaitHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := realWait(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if err := realWait(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceLoginGoogleScopeRefused(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.FailNext("invalid_scope", "Invalid device flow scope: https://mail.google.com/")
	cfg := testConfig(idp, t.TempDir(), newClock())
	cfg.Provider, cfg.Scopes = ProviderGoogle, nil
	err := mustNew(t, cfg).DeviceLogin(context.Background(), &bytes.Buffer{})
	if !errors.Is(err, ErrConsent) || !strings.Contains(err.Error(), "Google's device flow does not allow scope https://mail.google.com/") ||
		!strings.Contains(err.Error(), "refresh_token_file") {
		t.Fatalf("err = %v", err)
	}
}

// The code's lifetime (expires_in) ends the polling by the clock, even
// while the server still answers authorization_pending.
func TestDeviceLoginCodeLifetime(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.DeviceSteps = []string{"authorization_pending", "authorization_pending", "authorization_pending"}
	clock := newClock()
	cfg := testConfig(idp, t.TempDir(), clock)
	polls := 0
	cfg.Wait = func(ctx context.Context, d time.Duration) error {
		polls++
		clock.Advance(400 * time.Second) // the test IdP's codes live 900 s
		return nil
	}
	err := mustNew(t, cfg).DeviceLogin(context.Background(), &bytes.Buffer{})
	if !errors.Is(err, ErrDeviceExpired) || polls != 3 {
		t.Fatalf("err = %v after %d polls, want expired after 3", err, polls)
	}
}
