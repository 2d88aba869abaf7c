package luabind

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/outbox"
)

func TestMailSendEnqueuesDurably(t *testing.T) {
	ob, err := outbox.Open(t.TempDir(), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	L := NewState(Options{Outbox: ob, SMTP: SMTPOptions{DefaultAccount: "relay", Accounts: map[string]Account{"relay": {}}}})
	defer L.Close()
	err = L.DoString(`
local mail = require("mail")
local m = mail.message{ from = "Reports <reports@example.com>", to = "ops@example.com",
                        bcc = "audit@example.com", subject = "daily", text = "hi" }
id1, dup1 = mail.send(m, { key = "daily-2026-11-22" })
id2, dup2 = mail.send(m, { key = "daily-2026-11-22" })
ok, err = pcall(mail.send, m, { account = "nope" })`)
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := L.GetGlobal("id1").String(), L.GetGlobal("id2").String()
	if id1 == "" || id1 != id2 || L.GetGlobal("dup1") != lua.LFalse || L.GetGlobal("dup2") != lua.LTrue {
		t.Errorf("ids %q %q, duplicates %v %v: the same key must be queued once", id1, id2, L.GetGlobal("dup1"), L.GetGlobal("dup2"))
	}
	if !strings.Contains(L.GetGlobal("err").String(), `unknown account "nope"`) {
		t.Errorf("unknown account error = %v", L.GetGlobal("err"))
	}
	item, data, err := ob.Get(id1)
	if err != nil {
		t.Fatal(err)
	}
	if item.Account != "relay" || item.From != "reports@example.com" || strings.Join(item.To, ",") != "ops@example.com,audit@example.com" {
		t.Errorf("queued envelope %+v", item)
	}
	if !strings.Contains(string(data), "Subject: daily") || strings.Contains(string(data), "audit@") {
		t.Errorf("queued bytes:\n%s", data)
	}
}

func TestMailSendWithoutOutboxExplains(t *testing.T) {
	L := NewState(Options{})
	defer L.Close()
	err := L.DoString(`require("mail").send(require("mail").message{ from = "a@example.com", to = "b@example.com" })`)
	if err == nil || !strings.Contains(err.Error(), "no outbox") {
		t.Fatalf("mail.send without an outbox = %v", err)
	}
}

// TestMailSendList: mail.send with a list queues messages and
// { msg =, key =, ... } items with one call, returns one { id, duplicate }
// per item in order, and refuses a bad item, named by its index, before
// anything is stored.
func TestMailSendList(t *testing.T) {
	const setup = `
local mail = require("mail")
function msg(n) return mail.message{ from = "bot@example.com", to = "ops@example.com", subject = "r" .. n, text = "x" } end
`
	tests := []struct {
		name    string
		script  string // sets res, or raises
		wantErr string // "" for success
		want    string // "dup,dup,..." of res; "x" marks a duplicate
		queued  int    // messages in the outbox afterwards
		check   func(t *testing.T, ob *outbox.Outbox, L *lua.LState)
	}{
		{name: "messages and items", script: `
local m = msg(1)
res = mail.send({ m, { msg = msg(2), key = "k" }, { msg = msg(3), key = "k" }, m, { msg = msg(4), to = "x@example.com", account = "other" } })`,
			want: "-,-,x,x,-", queued: 3,
			check: func(t *testing.T, ob *outbox.Outbox, L *lua.LState) {
				res := L.GetGlobal("res").(*lua.LTable)
				id := func(i int) string { return L.GetField(res.RawGetInt(i), "id").String() }
				if id(3) != id(2) || id(4) != id(1) {
					t.Errorf("duplicates name other ids: %s %s %s %s", id(1), id(2), id(3), id(4))
				}
				it, _, err := ob.Get(id(5))
				if err != nil || it.Account != "other" || strings.Join(it.To, ",") != "x@example.com" {
					t.Errorf("item 5 queued as %+v, %v", it, err)
				}
			}},
		{name: "list options apply to every item", script: `
res = mail.send({ msg(1), { msg = msg(2), account = "relay" } }, { account = "other", from = "bounce@example.com" })`,
			want: "-,-", queued: 2,
			check: func(t *testing.T, ob *outbox.Outbox, L *lua.LState) {
				res := L.GetGlobal("res").(*lua.LTable)
				a, _, _ := ob.Get(L.GetField(res.RawGetInt(1), "id").String())
				b, _, _ := ob.Get(L.GetField(res.RawGetInt(2), "id").String())
				if a.Account != "other" || b.Account != "relay" || a.From != "bounce@example.com" || b.From != "bounce@example.com" {
					t.Errorf("queued %+v and %+v", a, b)
				}
			}},
		{name: "empty list", script: `res = mail.send({})`, want: "", queued: 0},
		{name: "bad item fails all", script: `mail.send({ msg(1), "text", msg(3) })`,
			wantErr: "mail.send: item 2: mail.message or { msg = m, key = ... } expected, got string"},
		{name: "item without msg", script: `mail.send({ msg(1), { key = "k" } })`,
			wantErr: `mail.send: item 2: field "msg" must be a mail.message, got nil`},
		{name: "unknown item field", script: `mail.send({ { msg = msg(1), kee = "k" } })`,
			wantErr: `mail.send: item 1: unknown field "kee"`},
		{name: "unknown account in item 3", script: `mail.send({ msg(1), msg(2), { msg = msg(3), account = "nope" } })`,
			wantErr: `mail.send: item 3: unknown account "nope"`},
		{name: "invalid recipient in item 2", script: `mail.send({ msg(1), { msg = msg(2), to = "a@b\r\nx" } })`,
			wantErr: "message 2 of 2"},
		{name: "key for a whole list", script: `mail.send({ msg(1) }, { key = "k" })`,
			wantErr: `option "key" cannot apply to a whole list`},
		{name: "not a list", script: `mail.send({ msg(1), x = msg(2) })`,
			wantErr: `non-index key "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob, err := outbox.Open(t.TempDir(), outbox.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Close()
			L := NewState(Options{Outbox: ob, SMTP: SMTPOptions{DefaultAccount: "relay",
				Accounts: map[string]Account{"relay": {}, "other": {}}}})
			defer L.Close()
			err = L.DoString(setup + tt.script)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			st, err := ob.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if int(st.Queued) != tt.queued {
				t.Errorf("%d queued, want %d", st.Queued, tt.queued)
			}
			if tt.wantErr != "" {
				return
			}
			res := L.GetGlobal("res").(*lua.LTable)
			var got []string
			for i := 1; i <= res.Len(); i++ {
				r := res.RawGetInt(i)
				if L.GetField(r, "id").String() == "" {
					t.Errorf("item %d has no id", i)
				}
				if lua.LVAsBool(L.GetField(r, "duplicate")) {
					got = append(got, "x")
				} else {
					got = append(got, "-")
				}
			}
			if g := strings.Join(got, ","); g != tt.want {
				t.Errorf("duplicates %q, want %q", g, tt.want)
			}
			if tt.check != nil {
				tt.check(t, ob, L)
			}
		})
	}
}
