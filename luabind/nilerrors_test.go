package luabind

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestNilCallNames(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the whole message, "file:line: " included
	}{
		{"method of smtp client", `local smtp = require("smtp")
local c = smtp.new()
c:sendmial("a@x", {"b@x"}, "hi")`,
			"chunk:3: attempt to call method 'sendmial' (a nil value); did you mean sendmail?"},
		{"method of smtp client, field syntax", `local c = require("smtp").new()
c.sendmial(c)`,
			"chunk:2: attempt to call field 'sendmial' (a nil value); did you mean sendmail?"},
		{"transposed method", `local c = require("smtp").new()
c:qiut()`,
			"chunk:2: attempt to call method 'qiut' (a nil value); did you mean quit?"},
		{"method of a mail message", `local mail = require("mail")
local m = mail.message{from = "a@x", to = "b@x", subject = "s", text = "t"}
m:attch{path = "x"}`,
			"chunk:3: attempt to call method 'attch' (a nil value); did you mean attach?"},
		{"field of local module table", `local smtp = require("smtp")
local c = smtp.conect{host = "x"}`,
			"chunk:2: attempt to call field 'conect' (a nil value); did you mean connect?"},
		{"field of module table held in an upvalue", `local mail = require("mail")
local function build()
  return mail.mesage{}
end
build()`,
			"chunk:3: attempt to call field 'mesage' (a nil value); did you mean message?"},
		{"field of global module table", `mail = require("mail")
local function f() mail.mesage{} end
f()`,
			"chunk:2: attempt to call field 'mesage' (a nil value); did you mean message?"},
		{"field of nested table", `local t = {a = {run = function() end}}
t.a.rnu()`,
			"chunk:2: attempt to call field 'rnu' (a nil value); did you mean run?"},
		{"field without a close name", `local smtp = require("smtp")
smtp.frobnicate()`,
			"chunk:2: attempt to call field 'frobnicate' (a nil value)"},
		{"global function", `function send_report() end
send_reprot()`,
			"chunk:2: attempt to call global 'send_reprot' (a nil value); did you mean send_report?"},
		{"global close to a local function", `local function helper() end
helpr()`,
			"chunk:2: attempt to call global 'helpr' (a nil value); did you mean helper?"},
		{"global close to a standard function", `prnt("x")`,
			"chunk:1: attempt to call global 'prnt' (a nil value); did you mean print?"},
		{"local nil", `local handler
handler()`,
			"chunk:2: attempt to call local 'handler' (a nil value)"},
		{"upvalue nil", `local cb
local function run() cb() end
run()`,
			"chunk:2: attempt to call upvalue 'cb' (a nil value)"},
		{"tail call", `local c = require("smtp").new()
local function f() return c:sendmial() end
f()`,
			"chunk:2: attempt to call method 'sendmial' (a nil value); did you mean sendmail?"},
		{"call inside arguments", `local smtp = require("smtp")
print(tostring(1), smtp.conect())`,
			"chunk:2: attempt to call field 'conect' (a nil value); did you mean connect?"},
		{"several close names", `local t = {sent = print, send = print}
t.sen()`,
			"chunk:2: attempt to call field 'sen' (a nil value); did you mean send or sent?"},
		{"method of a string", `local s = "abc"
return s:uper()`,
			"chunk:2: attempt to call method 'uper' (a nil value); did you mean upper?"},
		{"inside a coroutine", `local co = coroutine.wrap(function() local c = require("smtp").new(); c:qit() end)
co()`,
			"chunk:1: attempt to call method 'qit' (a nil value); did you mean quit?"},
		{"result of a call", `local function f() return nil end
f()()`,
			"chunk:2: attempt to call a nil value"},
		{"pcall of nil from Go", `pcall(nil)`, ""},
		{"index local nil", `local cfg
print(cfg.host)`,
			"chunk:2: attempt to index local 'cfg' (a nil value)"},
		{"index field nil", `local cfg = {account = {}}
print(cfg.acount.host)`,
			"chunk:2: attempt to index field 'acount' (a nil value); did you mean account?"},
		{"assign into global nil", `cfg.host = 1`,
			"chunk:1: attempt to index global 'cfg' (a nil value)"},
		{"index a call result", `local function f() end
print(f().x)`,
			"chunk:2: attempt to index a nil value with key 'x'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			L := newTestState(t, Options{})
			proto, err := CompileString(tt.src, "chunk")
			if err != nil {
				t.Fatal(err)
			}
			err = DoProto(L, proto)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if got := luaErrorMessage(err); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			file, line, ok := ErrorLocation(err)
			if !ok || file != "chunk" || !strings.HasPrefix(tt.want, "chunk:"+itoa(line)+":") {
				t.Errorf("ErrorLocation = %q, %d, %v", file, line, ok)
			}
		})
	}
}

func itoa(n int) string { return lua.LNumber(n).String() }

// A mailbot error table raised by a module keeps its kind and fields: only
// calls and indexing of nil are touched.
func TestNilErrorsLeaveErrorTables(t *testing.T) {
	L := newTestState(t, Options{})
	out, err := evalLua(L, `
local ok, e = pcall(error, {kind = "SMTPRecipientsRefused", message = "no"})
local ok2, e2 = pcall(function() local x; x() end)
return e.kind, e2, not getmetatable(nil)`)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].String() != "SMTPRecipientsRefused" {
		t.Errorf("kind = %v", out[0])
	}
	if !strings.HasSuffix(out[1].String(), "attempt to call local 'x' (a nil value)") {
		t.Errorf("pcall message = %q", out[1])
	}
	if out[2] != lua.LTrue {
		t.Errorf("getmetatable(nil) is truthy")
	}
}

func TestOneEdit(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"sendmial", "sendmail", true}, // transposition
		{"sendmal", "sendmail", true},  // insertion
		{"sendmaill", "sendmail", true},
		{"sendmeil", "sendmail", true},
		{"sendmail", "sendmail", false},
		{"sned", "send_message", false},
		{"ab", "ba", true},
		{"abc", "cba", false},
		{"", "a", true},
		{"conect", "connect", true},
		{"connetc", "connect", true},
		{"cnonetc", "connect", false},
	}
	for _, tt := range tests {
		if got := oneEdit(tt.a, tt.b); got != tt.want {
			t.Errorf("oneEdit(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
