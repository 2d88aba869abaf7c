// Package ops serves mailbot's operations endpoint: Prometheus metrics,
// health and readiness probes, a JSON status API, and the status page.
package ops

import (
	"context"
	"errors"
	"time"

	"github.com/mailbot/mailbot/engine"
)

// Status is a snapshot of a running mailbot, served as JSON by
// GET /api/status and rendered by the status page. The JSON field names
// are stable.
type Status struct {
	// Version is mailbot's version string.
	Version string `json:"version"`
	// Started is when the daemon started.
	Started time.Time `json:"started"`
	// Ready is true once the scripts are loaded and the outbox is open.
	Ready bool `json:"ready"`
	// ReadyReason says why Ready is false; "" when ready.
	ReadyReason string `json:"ready_reason,omitempty"`
	// Scripts lists every script the engine knows, loaded or not, by path.
	Scripts []ScriptStatus `json:"scripts"`
	// Triggers lists every registered trigger, with its live next run.
	Triggers []engine.TriggerInfo `json:"triggers"`
	// Outbox counts the outbox's messages.
	Outbox OutboxCounts `json:"outbox"`
	// Dead lists the dead letters.
	Dead []DeadLetter `json:"dead"`
	// Recent lists the latest deliveries, newest first (at most
	// RecentDeliveries).
	Recent []Delivery `json:"recent"`
}

// ScriptStatus describes one script file.
type ScriptStatus struct {
	// Path is the script's path.
	Path string `json:"path"`
	// Hash is the SHA-256 (hex) of the loaded version; "" if none loaded.
	Hash string `json:"hash"`
	// LoadError is the last load's error, with file:line; "" if it loaded.
	LoadError string `json:"load_error,omitempty"`
}

// OutboxCounts counts the outbox's messages by state.
type OutboxCounts struct {
	Queued  int `json:"queued"`
	Dead    int `json:"dead"`
	Corrupt int `json:"corrupt"`
}

// DeadLetter is a message the outbox gave up on.
type DeadLetter struct {
	ID         string   `json:"id"`
	Account    string   `json:"account"`
	Recipients []string `json:"recipients"`
	Subject    string   `json:"subject"`
	LastError  string   `json:"last_error"`
	Attempts   int      `json:"attempts"`
}

// Delivery is one message the relay accepted.
type Delivery struct {
	Time       time.Time `json:"time"`
	Account    string    `json:"account"`
	MessageID  string    `json:"message_id"`
	Recipients []string  `json:"recipients"`
	// Reply is the relay's final reply ("250 2.0.0 Ok: queued as ...").
	Reply string `json:"reply"`
}

// RecentDeliveries is how many deliveries Status.Recent keeps.
const RecentDeliveries = 100

// Backend is what the server reads and steers: the running daemon, or a
// fake in tests.
type Backend interface {
	// Status returns a snapshot.
	Status(ctx context.Context) (Status, error)
	// Fire runs the trigger with the ID ("<script>#<n>" or
	// "<script>#<name>") now, in process, and returns it after the run.
	Fire(ctx context.Context, id string) (engine.TriggerInfo, error)
	// RetryDead puts the dead letter back in the queue.
	RetryDead(ctx context.Context, id string) error
	// DeleteDead removes the dead letter.
	DeleteDead(ctx context.Context, id string) error
}

// ErrNotFound is wrapped by Backend methods when the trigger or dead
// letter does not exist; the server answers 404.
var ErrNotFound = errors.New("not found")

// CSRF protection, for the page helper:
//
// Every POST must carry a token, either in the form field "csrf_token"
// or in the header "X-CSRF-Token"; without a valid one the server answers
// 403. The token is an HMAC (SHA-256, keyed with a random per-process
// secret) of the request's credentials (the Authorization header, "" when
// no auth is configured), so it is bound to whoever is logged in and needs
// no cookie. Get it with (*Server).CSRFToken(r) while rendering the page
// (put it in a hidden input of every form), or from GET /api/csrf
// ({"token": "..."}).
//
// The status page (page.go) plugs in by setting pageRoutes in an init
// function; its handlers get the *Server (s.Backend().Status(ctx),
// s.CSRFToken(r)) and run behind the same authentication. Forms post to
// /api/fire (field "id"), /api/dead/{id}/retry and /api/dead/{id}/delete
// with the hidden fields "csrf_token" and "redirect" (e.g. "/"): on
// success the server answers 303 to redirect, on failure JSON
// {"error": ...} with 400/403/404/500.
