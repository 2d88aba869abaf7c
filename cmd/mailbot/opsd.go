package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/ops"
	"github.com/mailbot/mailbot/outbox"
)

// maxStatusDead bounds the dead letters a status snapshot lists.
const maxStatusDead = 500

// daemonOps is the operations side of "mailbot run": the metrics fed by
// the engine and the outbox, the recent deliveries, and the HTTP
// endpoint when the config has an http section.
type daemonOps struct {
	log     *slog.Logger
	metrics *ops.Metrics
	recent  *ops.Recent
	started time.Time
	e       *engine.Engine
	ob      *outbox.Outbox
	srv     *ops.Server
	ln      net.Listener
}

func newDaemonOps(logger *slog.Logger) *daemonOps {
	d := &daemonOps{log: logger, recent: ops.NewRecent(ops.RecentDeliveries), started: time.Now()}
	d.metrics = ops.NewMetrics(d.Status)
	return d
}

// outboxHooks feeds the metrics and the recent deliveries.
func (d *daemonOps) outboxHooks(o *outbox.Options) {
	o.OnDelivery = func(ev outbox.DeliveryEvent) {
		d.metrics.Delivery(ev.Account, ev.Result)
		if ev.Result == outbox.ResultSent {
			d.recent.Add(ops.Delivery{Time: ev.Time, Account: ev.Account, MessageID: ev.MessageID, Recipients: ev.Recipients, Reply: ev.Reply})
		}
	}
	o.OnSession = func(ev outbox.SessionEvent) {
		outcome := "ok"
		if ev.Err != nil {
			outcome = "error"
		}
		d.metrics.Session(ev.Account, outcome)
	}
}

// engineOption feeds the metrics from the engine.
func (d *daemonOps) engineOption() engine.Option {
	return engine.WithObserver(engine.Observer{
		RunFinished: func(ev engine.RunEvent) { d.metrics.RunFinished(ev.Script, ev.Trigger, ev.Outcome, ev.Duration) },
		FileHandled: d.metrics.FileHandled,
	})
}

// listen binds the endpoint of cfg's http section (nil without one), so
// a port in use fails the start.
func (d *daemonOps) listen(cfg *Config, getenv func(string) (string, bool)) error {
	if cfg.HTTP == nil {
		return nil
	}
	auth, err := cfg.httpAuth(getenv)
	if err != nil {
		return fmt.Errorf("http.auth: %w", err)
	}
	srv, err := ops.NewServer(ops.Options{Backend: d, Metrics: d.metrics, Auth: auth, Logger: d.log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.httpListen())
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	d.srv, d.ln = srv, ln
	return nil
}

// serve serves the endpoint until ctx is done.
func (d *daemonOps) serve(ctx context.Context, e *engine.Engine, ob *outbox.Outbox) <-chan error {
	d.e, d.ob = e, ob
	done := make(chan error, 1)
	if d.srv == nil {
		close(done)
		return done
	}
	d.log.Info("http endpoint listening", "addr", d.ln.Addr().String())
	go func() { done <- d.srv.Serve(ctx, d.ln) }()
	return done
}

// close releases the listener when serve did not take it.
func (d *daemonOps) close() {
	if d.ln != nil {
		d.ln.Close()
	}
}

// Status implements ops.Backend.
func (d *daemonOps) Status(ctx context.Context) (ops.Status, error) {
	st := ops.Status{Version: version(), Started: d.started, Scripts: []ops.ScriptStatus{}, Triggers: []engine.TriggerInfo{}, Dead: []ops.DeadLetter{}, Recent: d.recent.List()}
	switch {
	case d.e == nil:
		st.ReadyReason = "starting"
	case !d.e.Loaded():
		st.ReadyReason = "loading scripts"
	case d.ob == nil:
		st.ReadyReason = "outbox not open"
	default:
		st.Ready = true
	}
	if d.e != nil {
		for _, s := range d.e.Scripts() {
			st.Scripts = append(st.Scripts, ops.ScriptStatus{Path: s.Path, Hash: s.Hash, LoadError: s.LoadError})
		}
		st.Triggers = d.e.Triggers()
	}
	if d.ob != nil {
		counts, dead, err := outboxStatus(d.ob)
		if err != nil {
			return st, err
		}
		st.Outbox, st.Dead = counts, dead
	}
	return st, nil
}

// outboxStatus counts the outbox's messages and describes its dead
// letters.
func outboxStatus(ob *outbox.Outbox) (ops.OutboxCounts, []ops.DeadLetter, error) {
	s, err := ob.Stats()
	if err != nil {
		return ops.OutboxCounts{}, nil, fmt.Errorf("outbox: %w", err)
	}
	counts := ops.OutboxCounts{Queued: s.Queued, Dead: s.Dead, Corrupt: s.Corrupt}
	items, err := ob.Dead()
	if err != nil {
		return counts, nil, fmt.Errorf("outbox: %w", err)
	}
	dead := []ops.DeadLetter{}
	for i, it := range items {
		if i == maxStatusDead {
			break
		}
		dl := ops.DeadLetter{ID: it.ID, Account: it.Account, Recipients: it.To, LastError: deadReason(it), Attempts: it.Attempts}
		if dl.Recipients == nil {
			dl.Recipients = []string{}
		}
		if _, data, err := ob.Get(it.ID); err == nil {
			dl.Subject = subjectOf(data)
		}
		dead = append(dead, dl)
	}
	return counts, dead, nil
}

// subjectOf returns the decoded Subject header of a message, or "".
func subjectOf(data []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	s := m.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		s = dec
	}
	return oneLineText(s)
}

// Fire implements ops.Backend.
func (d *daemonOps) Fire(ctx context.Context, id string) (engine.TriggerInfo, error) {
	if d.e == nil || !d.e.Loaded() {
		return engine.TriggerInfo{}, errors.New("scripts are still loading")
	}
	res, err := d.e.FireTrigger(ctx, id)
	switch {
	case errors.Is(err, engine.ErrUnknownTrigger):
		return engine.TriggerInfo{}, fmt.Errorf("%w: %v", ops.ErrNotFound, err)
	case errors.Is(err, engine.ErrFireNeedsFile):
		return engine.TriggerInfo{}, fmt.Errorf("%w: %v", ops.ErrBadRequest, err)
	case err != nil:
		if _, _, perr := engine.ParseTriggerID(id); perr != nil {
			return engine.TriggerInfo{}, fmt.Errorf("%w: %v", ops.ErrBadRequest, err)
		}
		return engine.TriggerInfo{}, err
	}
	d.log.Info("trigger fired over http", "trigger", id, "outcome", res.Outcome, "duration", res.Duration.Round(time.Millisecond))
	return res.Trigger, nil
}

// RetryDead implements ops.Backend.
func (d *daemonOps) RetryDead(ctx context.Context, id string) error {
	if err := d.deadOnly(id); err != nil {
		return err
	}
	if err := d.ob.Requeue(id); err != nil {
		return backendErr(err)
	}
	d.log.Info("dead letter requeued over http", "id", id)
	return nil
}

// DeleteDead implements ops.Backend.
func (d *daemonOps) DeleteDead(ctx context.Context, id string) error {
	if err := d.deadOnly(id); err != nil {
		return err
	}
	if err := d.ob.Delete(id); err != nil {
		return backendErr(err)
	}
	d.log.Info("dead letter deleted over http", "id", id)
	return nil
}

// deadOnly refuses ids that are not dead letters: the endpoint steers
// dead letters only.
func (d *daemonOps) deadOnly(id string) error {
	if d.ob == nil {
		return errors.New("outbox not open")
	}
	it, _, err := d.ob.Get(id)
	if err != nil {
		return backendErr(err)
	}
	if it.State != outbox.StateDead {
		return fmt.Errorf("%w: %s is not a dead letter (it is %s)", ops.ErrNotFound, id, it.State)
	}
	return nil
}

func backendErr(err error) error {
	if errors.Is(err, outbox.ErrNotFound) {
		return fmt.Errorf("%w: %v", ops.ErrNotFound, err)
	}
	return err
}
