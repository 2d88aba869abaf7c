package engine

import (
	"context"
	"fmt"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/outbox"
)

// Alert handlers: mailbot.on_dead_letter(fn [, opts]) and
// mailbot.on_run_failed(fn [, opts]). They run as normal runs of their
// script (its state, lock, run timeout, memory limit and a worker slot),
// only in the daemon (Run): "mailbot fire" and "mailbot exec" call none.
//
// Alerts cannot feed themselves: a failed run of an on_run_failed handler
// is logged but calls no on_run_failed handler (of any script), and mail
// enqueued by any alert handler run is marked outbox.Item.NoAlert, so its
// becoming a dead letter calls no on_dead_letter handler.

// alertQueue bounds the dead letters waiting for their handlers; more
// are logged and dropped.
const alertQueue = 256

// DeadLetter describes a message that just became a dead letter, for the
// on_dead_letter handlers (see Engine.NotifyDeadLetter).
type DeadLetter struct {
	// ID is the outbox id ("mailbot queue show <id>").
	ID string
	// Account is the delivery account the message was queued for.
	Account string
	// Recipients are the recipients that were not delivered.
	Recipients []string
	// Subject and MessageID are the message's headers ("" if absent).
	Subject   string
	MessageID string
	// Attempts counts the delivery attempts made.
	Attempts int
	// LastError is the last failure, e.g. the relay's refusal.
	LastError string
	// Reason is why it is dead: "refused permanently", "maximum queue
	// age exceeded".
	Reason string
}

// DeadLetterFromItem converts an outbox dead letter (Options.OnDeadLetter).
func DeadLetterFromItem(it outbox.Item) DeadLetter {
	d := DeadLetter{ID: it.ID, Account: it.Account, Recipients: append([]string(nil), it.To...),
		Subject: it.Subject, MessageID: it.MessageID, Attempts: it.Attempts, LastError: it.LastError,
		Reason: it.DeadReason}
	if d.LastError == "" && len(it.Refused) > 0 {
		d.LastError = it.Refused[len(it.Refused)-1].Reply.Text
	}
	return d
}

// NotifyDeadLetter calls every loaded script's on_dead_letter handlers
// with d. It never blocks: it may be called from an outbox delivery
// worker (wire it to outbox.Options.OnDeadLetter), before Run has loaded
// the scripts too (the event waits for them). It does nothing on an
// engine that is not a daemon's.
func (e *Engine) NotifyDeadLetter(d DeadLetter) {
	select {
	case e.alertCh() <- d:
	default:
		e.log.Error("dead letter alert dropped: too many waiting for their handlers", "id", d.ID, "account", d.Account)
	}
}

func (e *Engine) alertCh() chan DeadLetter {
	e.deadOnce.Do(func() { e.deadLetters = make(chan DeadLetter, alertQueue) })
	return e.deadLetters
}

// alertTriggers holds a script's alert registrations.
type alertTriggers struct {
	deadLetter []*trigger
	runFailed  []*trigger
}

// isAlert reports a trigger of an alert handler.
func (t *trigger) isAlert() bool { return t.kind == "on_dead_letter" || t.kind == "on_run_failed" }

// luaOnDeadLetter: mailbot.on_dead_letter(fn [, {name=, timeout=}]).
func (s *script) luaOnDeadLetter(L *lua.LState) int {
	s.alerts.deadLetter = append(s.alerts.deadLetter, s.addAlert(L, "on_dead_letter"))
	return 0
}

// luaOnRunFailed: mailbot.on_run_failed(fn [, {name=, timeout=}]).
func (s *script) luaOnRunFailed(L *lua.LState) int {
	s.alerts.runFailed = append(s.alerts.runFailed, s.addAlert(L, "on_run_failed"))
	return 0
}

func (s *script) addAlert(L *lua.LState, kind string) *trigger {
	s.checkLoading(L, kind)
	fn := L.CheckFunction(1)
	opts := L.OptTable(2, L.NewTable())
	checkKeys(L, opts, kind, "name", "timeout")
	t := &trigger{s: s, kind: kind, label: kind, fn: fn, name: s.nameOpt(L, opts, kind),
		timeout: durationOpt(L, opts, "timeout", s.e.cfg.RunTimeout, kind)}
	s.register(t)
	return t
}

// alertHandlers returns every loaded script's handlers of one kind.
func (e *Engine) alertHandlers(runFailed bool) []*trigger {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*trigger
	for _, s := range e.scripts {
		if runFailed {
			out = append(out, s.alerts.runFailed...)
		} else {
			out = append(out, s.alerts.deadLetter...)
		}
	}
	return out
}

// fireAlert runs t with ev in its own goroutine, as an alert run.
func (e *Engine) fireAlert(t *trigger, ev map[string]lua.LValue) {
	if !e.inflight.begin() {
		return // shutting down
	}
	go func() {
		defer e.inflight.end()
		e.run(t, ev, nil)
	}()
}

// fireDeadLetter calls the on_dead_letter handlers with d (Run's loop).
func (e *Engine) fireDeadLetter(d DeadLetter) {
	for _, t := range e.alertHandlers(false) {
		e.fireAlert(t, map[string]lua.LValue{alertEventKey: &alertEvent{dead: &d}})
	}
}

// runFailed calls the on_run_failed handlers after a failed run of t,
// unless t is itself an on_run_failed handler or the engine is not a
// daemon's.
func (e *Engine) runFailed(t *trigger, ctx context.Context, err error) {
	if !e.lockRuns || e.firing || t.kind == "on_run_failed" {
		return
	}
	f := &runFailure{script: t.s.name, trigger: t.ID(), kind: classifyRun(ctx, err), err: luabind.DescribeError(err)}
	if _, ok := luabind.AsMemoryError(ctx, err); ok {
		f.kind = RunMemory
	}
	if file, line, ok := luabind.ErrorLocation(err); ok {
		f.where = fmt.Sprintf("%s:%d", filepath.Base(file), line)
	}
	for _, h := range e.alertHandlers(true) {
		e.fireAlert(h, map[string]lua.LValue{alertEventKey: &alertEvent{failed: f}})
	}
}

type runFailure struct{ script, trigger, kind, err, where string }

// alertEventKey carries an alert's data through runWith's fields to the
// run, which builds the Lua tables in the handler's own state.
const alertEventKey = "\x00alert"

// alertEvent is a placeholder LValue holding an alert's data.
type alertEvent struct {
	lua.LUserData
	dead   *DeadLetter
	failed *runFailure
}

// fill sets the alert's fields on ev, the handler's event table.
func (a *alertEvent) fill(L *lua.LState, ev *lua.LTable) {
	if d := a.dead; d != nil {
		rcpts := L.NewTable()
		for _, r := range d.Recipients {
			rcpts.Append(lua.LString(r))
		}
		for k, v := range map[string]lua.LValue{
			"id": lua.LString(d.ID), "account": lua.LString(d.Account), "recipients": rcpts,
			"subject": lua.LString(d.Subject), "message_id": lua.LString(d.MessageID),
			"attempts": lua.LNumber(d.Attempts), "last_error": lua.LString(d.LastError),
			"reason": lua.LString(d.Reason),
		} {
			ev.RawSetString(k, v)
		}
	}
	if f := a.failed; f != nil {
		for k, v := range map[string]string{
			"script": f.script, "trigger": f.trigger, "error": f.err, "kind": f.kind, "where": f.where,
		} {
			ev.RawSetString(k, lua.LString(v))
		}
	}
}

// alertContext marks the context of an alert handler run: what it
// enqueues raises no dead letter alert.
func alertContext(t *trigger, ctx context.Context) context.Context {
	if t.isAlert() {
		return outbox.WithoutAlerts(ctx)
	}
	return ctx
}

// sampleAlert is the event "mailbot fire" hands an alert handler, so its
// paging or mail can be tried out: made-up values, marked fired.
func sampleAlert(t *trigger) *alertEvent {
	if t.kind == "on_dead_letter" {
		return &alertEvent{dead: &DeadLetter{ID: "fired-sample", Account: "default",
			Recipients: []string{"nobody@example.invalid"}, Subject: "mailbot fire: sample dead letter",
			MessageID: "<fired-sample@mailbot.invalid>", Attempts: 1,
			LastError: "550 5.1.1 sample refusal (mailbot fire)", Reason: "refused permanently"}}
	}
	return &alertEvent{failed: &runFailure{script: t.s.name, trigger: t.ID(), kind: RunError,
		err: "sample failure (mailbot fire)", where: t.s.name + ":1"}}
}
