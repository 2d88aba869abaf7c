package luabind

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

var mailTestNow = time.Date(2026, 11, 22, 8, 30, 0, 0, time.FixedZone("CST", 8*3600))

// mailSeqReader is deterministic randomness: 0, 1, 2, ... modulo 256.
type mailSeqReader struct{ n byte }

func (r *mailSeqReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

// newMailTestState returns a plain state with only "mail" preloaded, so the
// module is tested on its own, independent of NewState's wiring.
func newMailTestState(t *testing.T, baseDir string) *lua.LState {
	t.Helper()
	L := lua.NewState()
	t.Cleanup(L.Close)
	L.PreloadModule("mail", NewMailModule(MailOptions{
		BaseDir: baseDir,
		Now:     func() time.Time { return mailTestNow },
		Rand:    &mailSeqReader{},
	}))
	return L
}

// mailRun runs a Lua file or chunk and returns its results.
func mailRun(t *testing.T, L *lua.LState, file, chunk string) []lua.LValue {
	t.Helper()
	top := L.GetTop()
	var err error
	if file != "" {
		err = L.DoFile(file)
	} else {
		err = L.DoString(chunk)
	}
	if err != nil {
		t.Fatalf("run Lua: %v", err)
	}
	var out []lua.LValue
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i))
	}
	L.SetTop(top)
	return out
}

// mailPart is a decoded MIME leaf.
type mailPart struct {
	typ, disp, filename, cid string
	body                     []byte
}

// mailDecode reads a message with the standard library and returns its
// header, its MIME shape ("multipart/mixed(text/plain,...)") and its leaves.
func mailDecode(t *testing.T, raw []byte) (mail.Header, string, []mailPart) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("output has bare LF line ends")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v", err)
	}
	var leaves []mailPart
	var walk func(h textproto.MIMEHeader, r io.Reader) string
	walk = func(h textproto.MIMEHeader, r io.Reader) string {
		mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil {
			t.Fatalf("Content-Type %q: %v", h.Get("Content-Type"), err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			var kids []string
			mr := multipart.NewReader(r, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("next part: %v", err)
				}
				kids = append(kids, walk(p.Header, p))
			}
			return mt + "(" + strings.Join(kids, ",") + ")"
		}
		switch h.Get("Content-Transfer-Encoding") {
		case "quoted-printable":
			r = quotedprintable.NewReader(r)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, r)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("decode %s: %v", mt, err)
		}
		p := mailPart{typ: mt, cid: h.Get("Content-ID"), body: body}
		if d := h.Get("Content-Disposition"); d != "" {
			var dp map[string]string
			p.disp, dp, _ = mime.ParseMediaType(d)
			p.filename = dp["filename"]
		}
		leaves = append(leaves, p)
		return mt
	}
	shape := walk(textproto.MIMEHeader(msg.Header), msg.Body)
	return msg.Header, shape, leaves
}

func mailAllBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestMailMessageReport(t *testing.T) {
	dir := t.TempDir()
	csv := []byte("date,count\r\n2026-11-22,1024\r\n")
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "out", "report.csv"), csv, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chart.png"), mailAllBytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	L := newMailTestState(t, dir)
	res := mailRun(t, L, "testdata/mail_report.lua", "")
	if len(res) != 5 {
		t.Fatalf("script returned %d values, want 5", len(res))
	}
	first, second := lua.LVAsString(res[0]), lua.LVAsString(res[1])
	if first != second {
		t.Errorf("as_string differs between calls:\n%s\n---\n%s", first, second)
	}
	hdr, shape, leaves := mailDecode(t, []byte(first))

	if got, _ := new(mime.WordDecoder).DecodeHeader(hdr.Get("Subject")); got != "日报 2026-11-22" {
		t.Errorf("Subject = %q", got)
	}
	from, err := hdr.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "日报机器人" || from[0].Address != "reports@example.com" {
		t.Errorf("From = %v, %v", from, err)
	}
	if d, err := hdr.Date(); err != nil || !d.Equal(mailTestNow) {
		t.Errorf("Date = %v, %v; want the injected clock %v", d, err, mailTestNow)
	}
	if got := hdr["X-Tag"]; !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Errorf("X-Tag = %q", got)
	}
	if got := hdr.Get("X-Report"); got != "daily" {
		t.Errorf("X-Report = %q", got)
	}
	if hdr.Get("Bcc") != "" || strings.Contains(first, "audit") {
		t.Error("bcc address written into the message")
	}

	// Attachment types are guessed from the file name, and the system's
	// mime.types may override Go's built-in table.
	guess := func(name string) string {
		mt, _, err := mime.ParseMediaType(mime.TypeByExtension(filepath.Ext(name)))
		if err != nil {
			return "application/octet-stream"
		}
		return mt
	}
	wantShape := "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png))," +
		guess("report.csv") + ",text/plain," + guess("日报.txt") + ")"
	if shape != wantShape {
		t.Fatalf("shape = %s\nwant    %s", shape, wantShape)
	}
	want := []mailPart{
		{typ: "text/plain", body: []byte("各位好：\r\n今日共处理邮件 1024 封。\r\n")},
		{typ: "text/html", body: []byte(`<p>各位好：</p><img src="cid:chart">`)},
		{typ: "image/png", disp: "inline", filename: "chart.png", cid: "<chart>", body: mailAllBytes()},
		{typ: guess("report.csv"), disp: "attachment", filename: "report.csv", body: csv},
		{typ: "text/plain", disp: "attachment", filename: "note.txt", body: []byte("remember\x00the\xffbytes")},
		{typ: guess("日报.txt"), disp: "attachment", filename: "日报.txt", body: []byte("第二个附件")},
	}
	for i := range want {
		if !reflect.DeepEqual(leaves[i], want[i]) {
			t.Errorf("part %d = %+v\nwant     %+v", i, leaves[i], want[i])
		}
	}

	rcpt, ok := res[2].(*lua.LTable)
	if !ok {
		t.Fatalf("recipients() returned %s", res[2].Type())
	}
	var got []string
	rcpt.ForEach(func(_, v lua.LValue) { got = append(got, lua.LVAsString(v)) })
	if w := []string{"a@example.com", "bob@example.com", "ops@example.com", "audit@example.com"}; !reflect.DeepEqual(got, w) {
		t.Errorf("recipients() = %q, want %q", got, w)
	}
	if got := lua.LVAsString(res[3]); got != "reports@example.com" {
		t.Errorf("envelope_from() = %q", got)
	}
	if got, w := lua.LVAsString(res[4]), `mail.message(subject="日报 2026-11-22", from="日报机器人 <reports@example.com>", recipients=4, attachments=4)`; got != w {
		t.Errorf("tostring(m) = %s, want %s", got, w)
	}
}

// mailPosRE matches the "chunk:line: " prefix gopher-lua adds to errors.
var mailPosRE = regexp.MustCompile(`^[^:\n]*:\d+: `)

func TestMailMessageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, spec, want string
	}{
		{"unknown field", `{ from = "a@example.com", attachements = {} }`,
			`mail.message: unknown field "attachements"`},
		{"positional entry", `{ "a@example.com" }`,
			`mail.message: unexpected key 1; fields are named, like from = ...`},
		{"missing from", `{ to = "a@example.com" }`,
			`mail.message: field "from" is required`},
		{"bad address in list", `{ from = "a@example.com", to = { "x@example.com", "bob" } }`,
			`mail.message: field "to"[2]: invalid address "bob": missing '@' or angle-addr`},
		{"bad address as string", `{ from = "a@example.com", cc = "bob" }`,
			`mail.message: field "cc": invalid address "bob": missing '@' or angle-addr`},
		{"bad from", `{ from = "reports" }`,
			`mail.message: field "from": invalid address "reports": missing '@' or angle-addr`},
		{"non-ascii address", `{ from = "a@example.com", bcc = { "用户@例子.广告" } }`,
			`mail.message: field "bcc"[1]: invalid address "用户@例子.广告": non-ASCII address needs SMTPUTF8, which is not supported`},
		{"subject injection", `{ from = "a@example.com", subject = "hi\r\nBcc: victim@example.org" }`,
			`mail.message: field "subject" contains CR/LF (header injection refused)`},
		{"to injection", `{ from = "a@example.com", to = { "b@example.com\nBcc: victim@example.org" } }`,
			`mail.message: field "to"[1] contains CR/LF (header injection refused)`},
		{"from injection", `{ from = "a@example.com\r\nX: y" }`,
			`mail.message: field "from" contains CR/LF (header injection refused)`},
		{"header value injection", `{ from = "a@example.com", headers = { ["X-A"] = "v\r\nBcc: victim@example.org" } }`,
			`mail.message: header "X-A" contains CR/LF (header injection refused)`},
		{"header name injection", `{ from = "a@example.com", headers = { ["X-A\nBcc"] = "v" } }`,
			`mail.message: header "X-A\nBcc" name contains CR/LF (header injection refused)`},
		{"header nul", `{ from = "a@example.com", headers = { ["X-A"] = "a\0b" } }`,
			`mail.message: header "X-A" contains NUL (header injection refused)`},
		{"filename injection", `{ from = "a@example.com", attachments = { { content = "x" }, { content = "y", filename = "a.txt\r\nX: y" } } }`,
			`mail.message: field "attachments"[2]: filename contains CR/LF (header injection refused)`},
		{"cid injection", `{ from = "a@example.com", html = "x", inline = { { content = "x", cid = "a>\r\nX: <b" } } }`,
			`mail.message: field "inline"[1]: content ID contains CR/LF (header injection refused)`},
		{"builder-owned header", `{ from = "a@example.com", headers = { ["Content-Type"] = "text/html" } }`,
			`mail.message: header "Content-Type": is written by the message builder and cannot be set`},
		{"missing file", `{ from = "a@example.com", attachments = { { path = "missing.csv" } } }`,
			`mail.message: field "attachments"[1]: open ` + filepath.Join(dir, "missing.csv") + `: no such file or directory`},
		{"attachment typo", `{ from = "a@example.com", attachments = { { contnet = "x" } } }`,
			`mail.message: field "attachments"[1]: unknown field "contnet"`},
		{"path and content", `{ from = "a@example.com", attachments = { { path = "a", content = "x" } } }`,
			`mail.message: field "attachments"[1]: give either path or content, not both`},
		{"cid outside inline", `{ from = "a@example.com", attachments = { { content = "x", cid = "c" } } }`,
			`mail.message: field "attachments"[1]: cid is only for inline parts; list this one under inline`},
		{"inline without cid", `{ from = "a@example.com", html = "x", inline = { { content = "x" } } }`,
			`mail.message: field "inline"[1]: inline part needs a cid, for <img src="cid:...">`},
		{"inline without html", `{ from = "a@example.com", text = "x", inline = { { content = "x", cid = "c" } } }`,
			`mail.message: field "inline"[1]: inline parts need an HTML body to refer to them`},
		{"bad content type", `{ from = "a@example.com", attachments = { { content = "x", content_type = "text/" } } }`,
			`mail.message: field "attachments"[1]: invalid content type "text/": mime: expected token after slash`},
		{"wrong type", `{ from = 1 }`,
			`mail.message: field "from": string expected, got number`},
		{"wrong list entry", `{ from = "a@example.com", to = { "b@example.com", 2 } }`,
			`mail.message: field "to"[2]: string expected, got number`},
		{"list with keys", `{ from = "a@example.com", bcc = { x = "b@example.com" } }`,
			`mail.message: field "bcc": list expected, got a table with non-list keys`},
		{"bad date", `{ from = "a@example.com", date = "yesterday" }`,
			`mail.message: field "date": mail: header could not be parsed`},
		{"bad message id", `{ from = "a@example.com", message_id = "a b" }`,
			`mail.message: field "message_id": message ID must be printable ASCII without spaces or angle brackets`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L := newMailTestState(t, dir)
			res := mailRun(t, L, "", `local mail = require("mail")
				local ok, err = pcall(mail.message, `+tc.spec+`)
				return ok, err`)
			if lua.LVAsBool(res[0]) {
				t.Fatalf("mail.message succeeded, want error %q", tc.want)
			}
			if got := mailPosRE.ReplaceAllString(lua.LVAsString(res[1]), ""); got != tc.want {
				t.Errorf("error = %s\nwant    %s", got, tc.want)
			}
		})
	}
}

func TestMailLuaAPI(t *testing.T) {
	L := newMailTestState(t, t.TempDir())
	runLuaTestFile(t, L, "testdata/mail_api_test.lua")
}

// TestMailMessageFromGo checks the helpers other Lua modules (smtp) use to
// accept messages, and that the metatable stays out of the globals.
func TestMailMessageFromGo(t *testing.T) {
	L := newMailTestState(t, t.TempDir())
	L.SetGlobal("subject_of", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(checkMessage(L, 1).Subject))
		return 1
	}))
	res := mailRun(t, L, "", `local mail = require("mail")
		local m = mail.message{ from = "a@example.com", subject = "日报" }
		local ok, err = pcall(subject_of, "not a message")
		return m, subject_of(m), ok, err`)
	m, ok := messageFromValue(res[0])
	if !ok || m.Subject != "日报" {
		t.Fatalf("messageFromValue = %v, %v", m, ok)
	}
	if got := lua.LVAsString(res[1]); got != "日报" {
		t.Errorf("checkMessage from a Go function: subject %q", got)
	}
	if lua.LVAsBool(res[2]) || !strings.Contains(lua.LVAsString(res[3]), "mail.message expected, got string") {
		t.Errorf("checkMessage on a string: ok=%v err=%v", res[2], res[3])
	}
	for _, v := range []lua.LValue{lua.LNil, lua.LString("x"), L.NewTable(), &lua.LUserData{Value: 42}} {
		if _, ok := messageFromValue(v); ok {
			t.Errorf("messageFromValue(%v) accepted a non-message", v)
		}
	}
	if L.GetGlobal(mailMessageTypeName) != lua.LNil {
		t.Error("message metatable is visible as a global")
	}
	if _, ok := L.GetTypeMetatable(mailMessageTypeName).(*lua.LTable); !ok {
		t.Error("message metatable missing from the registry")
	}
	// The Go message is the same object Lua holds: bytes built from Go
	// match as_string, which is what c:send_message relies on.
	raw, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	L.SetGlobal("m", res[0])
	if got := mailRun(t, L, "", `return m:as_string()`); lua.LVAsString(got[0]) != string(raw) {
		t.Error("as_string differs from Message.Bytes for the same message")
	}
}

func ExampleNewMailModule() {
	L := lua.NewState()
	defer L.Close()
	L.PreloadModule("mail", NewMailModule(MailOptions{BaseDir: "."}))
	err := L.DoString(`
		local mail = require("mail")
		local m = mail.message{
		  from = "Reports <reports@example.com>",
		  to = { "a@example.com" }, bcc = "audit@example.com",
		  subject = "nightly", text = "All jobs finished.",
		  attachments = { { filename = "note.txt", content = "ok", content_type = "text/plain" } },
		  headers = { ["X-Report"] = "daily" },
		}
		print(table.concat(m:recipients(), " "))
		print(m:envelope_from(), m:header("X-Report"))
		print(m:as_string():find("Bcc:", 1, true) == nil)
	`)
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// a@example.com audit@example.com
	// reports@example.com	daily
	// true
}
