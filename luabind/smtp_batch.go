package luabind

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unsafe"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/smtp"
)

// batchItemFields are the keys a c:send_batch item table accepts: the
// envelope and message, and c:sendmail's options.
var batchItemFields = map[string]bool{
	"from": true, "to": true, "msg": true,
	"mail_options": true, "rcpt_options": true, "dsn": true, "chunking": true,
}

// batchOptFields are the keys of c:send_batch's second argument.
var batchOptFields = map[string]bool{"window": true, "chunking": true}

func knownKeys(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// unknownKey returns the first key of t not in known, or "".
func unknownKey(t *lua.LTable, known map[string]bool) string {
	bad := ""
	t.ForEach(func(k, _ lua.LValue) {
		if ks, ok := k.(lua.LString); (!ok || !known[string(ks)]) && bad == "" {
			bad = k.String()
		}
	})
	return bad
}

// clientSendBatch: c:send_batch(list [, {window = 16, chunking = true}]) -> results
//
// Each item is {from=, to=, msg= [, mail_options=, rcpt_options=, dsn=,
// chunking=]} or a mail.message (envelope from its headers, as
// c:send_message takes it). The messages are pipelined over the session
// (smtp.Client.SendBatch); results[i] is {ok = true, refused = {...}} or
// {ok = false, error = <the table c:sendmail would raise>}. A bad item
// (a missing address, a wrong type) fails alone; only a bad list or bad
// options raise.
func clientSendBatch(L *lua.LState) int {
	lc := checkClient(L, 1)
	c := connected(L, lc)
	list := L.CheckTable(2)
	window := 0
	noChunking := false
	switch o := L.Get(3).(type) {
	case *lua.LNilType:
	case *lua.LTable:
		if bad := unknownKey(o, batchOptFields); bad != "" {
			L.ArgError(3, fmt.Sprintf("unknown option %q (known: %s)", bad, knownKeys(batchOptFields)))
		}
		if v := L.GetField(o, "window"); v != lua.LNil {
			n, ok := v.(lua.LNumber)
			if !ok || n < 1 || n > 1024 || float64(n) != float64(int(n)) {
				L.ArgError(3, "window must be a whole number from 1 to 1024")
			}
			window = int(n)
		}
		if v := L.GetField(o, "chunking"); v != lua.LNil {
			if _, ok := v.(lua.LBool); !ok {
				L.ArgError(3, "chunking must be a boolean")
			}
			noChunking = !lua.LVAsBool(v)
		}
	default:
		L.ArgError(3, "options table expected")
	}

	n := list.Len()
	results := make([]lua.LValue, n)
	msgs := make([]smtp.Outgoing, 0, n)
	index := make([]int, 0, n) // msgs[j] is item index[j]
	var item smtp.Outgoing
	parse := L.NewFunction(func(L *lua.LState) int {
		item = batchItem(L, lc)
		return 0
	})
	for i := 1; i <= n; i++ {
		v := list.RawGetInt(i)
		if m, ok := fastBatchItem(v); ok {
			item = m
		} else {
			L.Push(parse)
			L.Push(v)
			if err := L.PCall(1, 0, nil); err != nil {
				results[i-1] = batchFailure(L, itemError(i, err), "ValueError")
				continue
			}
		}
		if lc.account != nil && lc.account.Sign != nil {
			signed, err := lc.account.Sign(item.Data)
			if err != nil {
				results[i-1] = batchFailure(L, fmt.Errorf("send_batch: item %d: DKIM-signing for account %q: %w", i, lc.accountName, err), "")
				continue
			}
			item.Data = signed
		}
		if noChunking {
			if item.Opts == nil {
				item.Opts = &smtp.SendOptions{}
			}
			item.Opts.NoChunking = true
		}
		msgs = append(msgs, item)
		index = append(index, i-1)
	}

	if len(msgs) > 0 {
		saved := c.BatchWindow
		if window > 0 {
			c.BatchWindow = window
		}
		res := c.SendBatch(runCtx(L), msgs, nil)
		c.BatchWindow = saved
		for j, r := range res {
			if r.Err != nil {
				results[index[j]] = batchFailure(L, r.Err, "")
				continue
			}
			t := L.CreateTable(0, 2)
			t.RawSetString("ok", lua.LTrue)
			t.RawSetString("refused", refusalsTable(L, r.Refused))
			results[index[j]] = t
		}
	}
	out := L.CreateTable(n, 0)
	for _, r := range results {
		out.Append(r)
	}
	L.Push(out)
	return 1
}

// itemError turns a failed item parse into an error naming the item.
func itemError(i int, err error) error {
	msg := err.Error()
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		msg = ae.Object.String()
	}
	return fmt.Errorf("send_batch: item %d: %s", i, msg)
}

// batchFailure is a failed item's result; kind, when set, overrides the
// error's kind.
func batchFailure(L *lua.LState, err error, kind string) *lua.LTable {
	et := smtpErrorTable(L, err)
	if kind != "" {
		et.RawSetString("kind", lua.LString(kind))
	}
	t := L.CreateTable(0, 2)
	t.RawSetString("ok", lua.LFalse)
	t.RawSetString("error", et)
	return t
}

// fastBatchItem reads the common item {from = "...", to = "..." or
// {"...", ...}, msg = "..."} without a protected call; anything else goes
// through batchItem.
func fastBatchItem(v lua.LValue) (smtp.Outgoing, bool) {
	t, ok := v.(*lua.LTable)
	if !ok || t.Metatable != lua.LNil {
		return smtp.Outgoing{}, false
	}
	from, ok1 := t.RawGetString("from").(lua.LString)
	msg, ok2 := t.RawGetString("msg").(lua.LString)
	if !ok1 || !ok2 {
		return smtp.Outgoing{}, false
	}
	var to []string
	switch tv := t.RawGetString("to").(type) {
	case lua.LString:
		to = []string{string(tv)}
	case *lua.LTable:
		to = make([]string, 0, tv.Len())
		for i := 1; i <= tv.Len(); i++ {
			s, ok := tv.RawGetInt(i).(lua.LString)
			if !ok {
				return smtp.Outgoing{}, false
			}
			to = append(to, string(s))
		}
	default:
		return smtp.Outgoing{}, false
	}
	// Only the three fields: options take the general path.
	keys := 0
	t.ForEach(func(lua.LValue, lua.LValue) { keys++ })
	if keys != 3 {
		return smtp.Outgoing{}, false
	}
	return smtp.Outgoing{From: string(from), To: to, Data: luaStringBytes(msg)}, true
}

// batchItem reads the item at stack index 1, raising on a bad one (the
// caller runs it protected).
func batchItem(L *lua.LState, lc *luaClient) smtp.Outgoing {
	v := L.Get(1)
	if m, ok := messageFromValue(v); ok {
		from, err := m.EnvelopeFrom()
		if err != nil {
			L.RaiseError("%v", err)
		}
		to, err := m.Recipients()
		if err != nil {
			L.RaiseError("%v", err)
		}
		b, err := m.Bytes()
		if err != nil {
			L.RaiseError("building the message: %v", err)
		}
		return smtp.Outgoing{From: from, To: to, Data: b}
	}
	t, ok := v.(*lua.LTable)
	if !ok {
		L.RaiseError("item must be a table {from=, to=, msg=} or a mail.message, got %s", v.Type())
	}
	if bad := unknownKey(t, batchItemFields); bad != "" {
		L.RaiseError("unknown field %q (known: %s)", bad, knownKeys(batchItemFields))
	}
	msgv := L.GetField(t, "msg")
	var from string
	var to []string
	if m, ok := messageFromValue(msgv); ok {
		// A message's headers give what the item leaves out.
		f, err := m.EnvelopeFrom()
		if err == nil {
			from = f
		}
		if r, err := m.Recipients(); err == nil {
			to = r
		}
	}
	switch fv := L.GetField(t, "from").(type) {
	case lua.LString:
		from = string(fv)
	case *lua.LNilType:
		if from == "" {
			L.RaiseError("from is missing")
		}
	default:
		L.RaiseError("from must be a string")
	}
	if tv := L.GetField(t, "to"); tv != lua.LNil {
		L.Push(tv)
		to = stringList(L, L.GetTop(), "to")
		L.Pop(1)
	}
	if len(to) == 0 {
		L.RaiseError("to is missing")
	}
	if msgv == lua.LNil {
		L.RaiseError("msg is missing")
	}
	L.Push(msgv)
	data := messageBytes(L, L.GetTop())
	L.Pop(1)
	return smtp.Outgoing{From: from, To: to, Data: data, Opts: sendOptions(L, 1)}
}

// luaStringBytes returns the bytes of a Lua string without a copy; see
// messageBytes for why the smtp client may read them.
func luaStringBytes(s lua.LString) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(string(s)), len(s))
}
