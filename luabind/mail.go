package luabind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/message"
	"github.com/mailbot/mailbot/outbox"
)

// MailOptions configures the mail module returned by NewMailModule. The zero
// value is usable.
type MailOptions struct {
	// BaseDir anchors relative attachment paths; absolute paths are used as
	// given, as in the fs module. Empty means the process working directory.
	BaseDir string
	// Now supplies the Date of messages that set none; default time.Now.
	Now func() time.Time
	// Rand supplies randomness for Message-IDs and MIME boundaries; nil
	// means crypto/rand. Tests set it for reproducible output.
	Rand io.Reader
	// Outbox backs mail.send (durable enqueue); nil makes mail.send
	// raise, explaining that this host has no outbox.
	Outbox Enqueuer
	// DefaultAccount is the account mail.send uses when none is given;
	// Accounts, when not nil, lists the valid account names.
	DefaultAccount string
	Accounts       map[string]bool
	// ReadFile reads attachment paths; default os.ReadFile after joining
	// BaseDir. NewState sets it to the state's file gate, which applies the
	// sandbox's confinement and refuses secret files.
	ReadFile func(path string) ([]byte, error)
}

// Enqueuer accepts a message for durable delivery; *outbox.Outbox is one.
type Enqueuer interface {
	Enqueue(ctx context.Context, env outbox.Envelope, data []byte) (id string, duplicate bool, err error)
}

// mailMessageTypeName names the metatable of message userdata. It lives in
// the registry only, so scripts cannot reach or alter it.
const mailMessageTypeName = "mailbot.mail.message"

// NewMailModule returns the loader of the Lua module "mail", for
// L.PreloadModule("mail", luabind.NewMailModule(opts)).
//
//	local mail = require("mail")
//	local m = mail.message{
//	  from = "Reports <reports@example.com>",    -- required
//	  sender = nil,                               -- optional agent address
//	  to = { "a@example.com" }, cc = {}, bcc = {}, reply_to = nil,
//	                                              -- each a string or a list
//	  subject = "日报 2026-11-22",
//	  text = "plain body", html = "<p>html body</p>",
//	  attachments = { { path = "out/report.csv" },
//	                  { filename = "note.txt", content = "...", content_type = "text/plain" } },
//	  inline = { { path = "chart.png", cid = "chart" } },   -- for <img src="cid:chart">
//	  headers = { ["X-Report"] = "daily" },       -- value: string or list of strings
//	  date = os.time(),                           -- optional: unix seconds or RFC 5322 text
//	  message_id = nil,                           -- optional; generated when absent
//	}
//	m:as_string()                -> RFC 5322 text with CRLF line ends; the same on every call
//	m:set_header(name, value)    -- replace; standard names (Subject, To ...) set the field
//	m:add_header(name, value)    -- add another
//	m:header(name)               -> string | nil
//	m:attach{ path = ... | content = ..., filename =, content_type =, cid = }
//	                             -- with cid: an inline part
//	m:recipients()               -> { "a@example.com", ... }   envelope recipients, bcc included
//	m:envelope_from()            -> "reports@example.com"      sender if set, else from
//	tostring(m)                  -> short summary
//	m.subject, m.from, m.sender, m.to, m.cc, m.bcc, m.reply_to, m.text, m.html,
//	m.message_id, m.date         -- read-only copies of the fields
//
// Unknown fields are errors, so a typo such as "attachements" does not drop
// an attachment silently. Misuse raises an error naming the field, e.g.
// `mail.message: field "to"[2]: invalid address "bob": missing '@' or angle-addr`
// or `mail.message: header "X-A" contains CR/LF (header injection refused)`.
func NewMailModule(opts MailOptions) lua.LGFunction {
	return func(L *lua.LState) int {
		mailRegisterType(L, &opts)
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"message": func(L *lua.LState) int { return mailMessageNew(L, &opts) },
			"send":    func(L *lua.LState) int { return mailSend(L, &opts) },
		})
		L.Push(mod)
		return 1
	}
}

// checkMessage returns the message at stack index n or raises an argument
// error. The smtp module uses it for c:send_message(m).
func checkMessage(L *lua.LState, n int) *message.Message {
	if m, ok := messageFromValue(L.Get(n)); ok {
		return m
	}
	L.ArgError(n, "mail.message expected, got "+L.Get(n).Type().String())
	return nil
}

// messageFromValue reports whether v is a message built by mail.message and
// returns it. The smtp module uses it where a message or a string is
// accepted, as in c:sendmail(from, to, m).
func messageFromValue(v lua.LValue) (*message.Message, bool) {
	ud, ok := v.(*lua.LUserData)
	if !ok {
		return nil, false
	}
	m, ok := ud.Value.(*message.Message)
	return m, ok
}

// mailMessageFields are the fields mail.message{} accepts.
var mailMessageFields = map[string]bool{
	"from": true, "sender": true, "to": true, "cc": true, "bcc": true, "reply_to": true,
	"subject": true, "text": true, "html": true, "attachments": true, "inline": true,
	"headers": true, "date": true, "message_id": true,
}

// mailAttachmentFields are the fields of an attachment table.
var mailAttachmentFields = map[string]bool{
	"path": true, "filename": true, "content": true, "content_type": true, "cid": true,
}

// mailLuaField maps header names of message errors to mail.message fields.
var mailLuaField = map[string]string{
	"From": "from", "Sender": "sender", "To": "to", "Cc": "cc", "Bcc": "bcc",
	"Reply-To": "reply_to", "Subject": "subject", "Message-ID": "message_id",
}

// mailRegisterType installs the message metatable once per state.
func mailRegisterType(L *lua.LState, opts *MailOptions) {
	mt := L.NewTypeMetatable(mailMessageTypeName)
	methods := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"as_string":     mailMessageAsString,
		"set_header":    mailMessageSetHeader,
		"add_header":    mailMessageAddHeader,
		"header":        mailMessageHeader,
		"attach":        func(L *lua.LState) int { return mailMessageAttach(L, opts) },
		"attach_inline": func(L *lua.LState) int { return mailMessageAttachInline(L, opts) },
		"recipients":    mailMessageRecipients,
		"envelope_from": mailMessageEnvelopeFrom,
	})
	var names []string
	methods.ForEach(func(k, _ lua.LValue) { names = append(names, k.String()) })
	registerMethodNames(L, mt, names)
	L.SetField(mt, "__index", L.NewFunction(func(L *lua.LState) int {
		m := checkMessage(L, 1)
		key := L.CheckString(2)
		if fn := methods.RawGetString(key); fn != lua.LNil {
			L.Push(fn)
			return 1
		}
		L.Push(mailMessageField(L, m, key))
		return 1
	}))
	L.SetField(mt, "__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("mail.message: field %q is read-only; use m:set_header or m:attach", L.CheckString(2))
		return 0
	}))
	L.SetField(mt, "__tostring", L.NewFunction(mailMessageToString))
}

// mailMessageNew: mail.message{...} -> message
func mailMessageNew(L *lua.LState, opts *MailOptions) int {
	spec := L.CheckTable(1)
	fail := func(format string, args ...any) {
		L.RaiseError("mail.message: "+format, args...)
	}
	if msg := mailUnknownKeys(spec, mailMessageFields); msg != "" {
		fail("%s", msg)
	}
	m := &message.Message{Now: opts.Now, Rand: opts.Rand}
	str := func(name string) string {
		switch v := spec.RawGetString(name).(type) {
		case *lua.LNilType:
			return ""
		case lua.LString:
			return string(v)
		default:
			fail("field %q: string expected, got %s", name, v.Type())
			return ""
		}
	}
	m.From = str("from")
	m.Sender = str("sender")
	m.Subject = str("subject")
	m.Text = str("text")
	m.HTML = str("html")
	m.MessageID = str("message_id")

	// scalar records address fields given as one string rather than a list,
	// so errors can leave out the list position.
	scalar := map[string]bool{}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{"to", &m.To}, {"cc", &m.Cc}, {"bcc", &m.Bcc}, {"reply_to", &m.ReplyTo}} {
		list, isScalar, err := mailStringList(spec.RawGetString(f.name))
		if err != "" {
			fail("field %q%s", f.name, err)
		}
		*f.dst, scalar[f.name] = list, isScalar
	}

	switch v := spec.RawGetString("date").(type) {
	case *lua.LNilType:
	case lua.LNumber:
		sec, frac := math.Modf(float64(v))
		m.Date = time.Unix(int64(sec), int64(frac*1e9))
	case lua.LString:
		t, err := mail.ParseDate(string(v))
		if err != nil {
			fail("field \"date\": %v", err)
		}
		m.Date = t
	default:
		fail("field \"date\": number or string expected, got %s", v.Type())
	}

	for _, f := range []struct {
		name   string
		inline bool
	}{{"attachments", false}, {"inline", true}} {
		v := spec.RawGetString(f.name)
		if v == lua.LNil {
			continue
		}
		tbl, ok := v.(*lua.LTable)
		if !ok {
			fail("field %q: list of tables expected, got %s", f.name, v.Type())
		}
		n, msg := mailSequenceLen(tbl)
		if msg != "" {
			fail("field %q%s", f.name, msg)
		}
		for i := 1; i <= n; i++ {
			a, hasCID, msg := mailAttachment(tbl.RawGetInt(i), opts, f.inline)
			if msg != "" {
				fail("field %q[%d]: %s", f.name, i, msg)
			}
			if hasCID && !f.inline {
				fail("field %q[%d]: cid is only for inline parts; list this one under inline", f.name, i)
			}
			if f.inline {
				m.Inline = append(m.Inline, a)
			} else {
				m.Attachments = append(m.Attachments, a)
			}
		}
	}

	if v := spec.RawGetString("headers"); v != lua.LNil {
		if err := mailApplyHeaders(m, v); err != "" {
			fail("%s", err)
		}
	}

	if err := m.Validate(); err != nil {
		fail("%s", mailErrorText(err, scalar))
	}
	ud := L.NewUserData()
	ud.Value = m
	L.SetMetatable(ud, L.GetTypeMetatable(mailMessageTypeName))
	L.Push(ud)
	return 1
}

// mailUnknownKeys returns a message naming the first key of t (in sorted
// order, so the message is stable) that is not in known, or "".
func mailUnknownKeys(t *lua.LTable, known map[string]bool) string {
	var bad []string
	t.ForEach(func(k, _ lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			if !known[string(s)] {
				bad = append(bad, fmt.Sprintf("unknown field %q", string(s)))
			}
			return
		}
		bad = append(bad, fmt.Sprintf("unexpected key %s; fields are named, like from = ...", k.String()))
	})
	if len(bad) == 0 {
		return ""
	}
	sort.Strings(bad)
	return bad[0]
}

// mailSequenceLen returns the length of a Lua list, or a message (starting
// with the position, to follow a field name) when t has other keys.
func mailSequenceLen(t *lua.LTable) (int, string) {
	n, count := t.Len(), 0
	t.ForEach(func(_, _ lua.LValue) { count++ })
	if count != n {
		return 0, ": list expected, got a table with non-list keys"
	}
	return n, ""
}

// mailStringList reads an address field: nil, one string or a list of
// strings. Error messages start with the position or ": ".
func mailStringList(v lua.LValue) (list []string, scalar bool, errMsg string) {
	switch v := v.(type) {
	case *lua.LNilType:
		return nil, false, ""
	case lua.LString:
		return []string{string(v)}, true, ""
	case *lua.LTable:
		n, msg := mailSequenceLen(v)
		if msg != "" {
			return nil, false, msg
		}
		for i := 1; i <= n; i++ {
			s, ok := v.RawGetInt(i).(lua.LString)
			if !ok {
				return nil, false, fmt.Sprintf("[%d]: string expected, got %s", i, v.RawGetInt(i).Type())
			}
			list = append(list, string(s))
		}
		return list, false, ""
	default:
		return nil, false, ": string or list of strings expected, got " + v.Type().String()
	}
}

// mailApplyHeaders sets the headers table {name = value | {values...}} on m,
// in name order so the output does not depend on Lua's table order.
func mailApplyHeaders(m *message.Message, v lua.LValue) string {
	tbl, ok := v.(*lua.LTable)
	if !ok {
		return fmt.Sprintf("field \"headers\": table expected, got %s", v.Type())
	}
	var names []string
	var bad string
	tbl.ForEach(func(k, _ lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			names = append(names, string(s))
		} else if bad == "" {
			bad = fmt.Sprintf("field \"headers\": header names must be strings, got %s", k.Type())
		}
	})
	if bad != "" {
		return bad
	}
	sort.Strings(names)
	for _, name := range names {
		var values []string
		switch hv := tbl.RawGetString(name).(type) {
		case lua.LString:
			values = []string{string(hv)}
		case *lua.LTable:
			list, _, msg := mailStringList(hv)
			if msg != "" {
				return fmt.Sprintf("field \"headers\"[%q]%s", name, msg)
			}
			values = list
		default:
			return fmt.Sprintf("field \"headers\"[%q]: string or list of strings expected, got %s", name, hv.Type())
		}
		for i, val := range values {
			var err error
			if i == 0 {
				err = m.SetHeader(name, val)
			} else {
				err = m.AddHeader(name, val)
			}
			if err != nil {
				return mailErrorText(err, nil)
			}
		}
	}
	return ""
}

// mailAttachment reads an attachment table. It returns whether the table
// asked for an inline part (it has a cid) and an error message, if any.
// Content types and names are checked later by Message.Validate.
func mailAttachment(v lua.LValue, opts *MailOptions, inline bool) (message.Attachment, bool, string) {
	var a message.Attachment
	t, ok := v.(*lua.LTable)
	if !ok {
		return a, false, "table expected, got " + v.Type().String()
	}
	if msg := mailUnknownKeys(t, mailAttachmentFields); msg != "" {
		return a, false, msg
	}
	get := func(name string) (string, bool, string) {
		switch v := t.RawGetString(name).(type) {
		case *lua.LNilType:
			return "", false, ""
		case lua.LString:
			return string(v), true, ""
		default:
			return "", false, fmt.Sprintf("field %q: string expected, got %s", name, v.Type())
		}
	}
	path, hasPath, msg := get("path")
	content, hasContent, msg2 := get("content")
	filename, hasName, msg3 := get("filename")
	ctype, _, msg4 := get("content_type")
	cid, hasCID, msg5 := get("cid")
	for _, m := range []string{msg, msg2, msg3, msg4, msg5} {
		if m != "" {
			return a, false, m
		}
	}
	switch {
	case hasPath && hasContent:
		return a, false, "give either path or content, not both"
	case !hasPath && !hasContent:
		return a, false, "path or content is required"
	case inline && !hasCID:
		return a, false, "inline part needs a cid, for <img src=\"cid:...\">"
	}
	if hasPath {
		p := path
		if !filepath.IsAbs(p) && opts.BaseDir != "" {
			p = filepath.Join(opts.BaseDir, p)
		}
		var data []byte
		var err error
		if opts.ReadFile != nil {
			data, err = opts.ReadFile(path)
		} else {
			data, err = os.ReadFile(p)
		}
		if err != nil {
			return a, false, err.Error() // *PathError: names the operation and the path
		}
		a.Content = data
		if !hasName {
			filename = filepath.Base(p)
		}
	} else {
		a.Content = []byte(content)
	}
	if ctype == "" {
		ctype = sniffType(filename, a.Content)
	}
	a.Filename, a.ContentType, a.ContentID = filename, ctype, cid
	return a, hasCID, ""
}

// mailErrorText renders an error from the message package in terms of the
// Lua API: fields of mail.message{} where they exist, header names
// otherwise. scalar marks address fields that were given as one string.
func mailErrorText(err error, scalar map[string]bool) string {
	var (
		ae *message.AddressError
		te *message.AttachmentError
		he *message.HeaderError
	)
	injection := func(he *message.HeaderError) bool { return errors.Is(he, message.ErrHeaderInjection) }
	headerText := func(where string, he *message.HeaderError) string {
		if injection(he) {
			return where + " " + he.Reason + " (header injection refused)"
		}
		return where + ": " + he.Reason
	}
	switch {
	case errors.As(err, &ae):
		where := fmt.Sprintf("header %q", ae.Field)
		if f, ok := mailLuaField[ae.Field]; ok {
			where = fmt.Sprintf("field %q", f)
			if ae.Index >= 0 && !scalar[f] {
				where += fmt.Sprintf("[%d]", ae.Index+1)
			}
		}
		if errors.As(ae.Err, &he) {
			return headerText(where, he)
		}
		return fmt.Sprintf("%s: invalid address %q: %s", where, ae.Address, strings.TrimPrefix(ae.Err.Error(), "mail: "))
	case errors.As(err, &te):
		list := "attachments"
		if te.Inline {
			list = "inline"
		}
		where := fmt.Sprintf("field %q[%d]", list, te.Index+1)
		if errors.As(te.Err, &he) {
			if injection(he) {
				return where + ": " + he.Reason + " (header injection refused)"
			}
			return where + ": " + he.Reason
		}
		return where + ": " + te.Err.Error()
	case errors.As(err, &he):
		if f, ok := mailLuaField[he.Name]; ok {
			return headerText(fmt.Sprintf("field %q", f), he)
		}
		return headerText(fmt.Sprintf("header %q", he.Name), he)
	case errors.Is(err, message.ErrNoFrom):
		return "field \"from\" is required"
	}
	return err.Error()
}

// mailMessageAsString: m:as_string() -> string
func mailMessageAsString(L *lua.LState) int {
	m := checkMessage(L, 1)
	b, err := m.Bytes()
	if err != nil {
		L.RaiseError("mail.message:as_string: %s", mailErrorText(err, nil))
	}
	L.Push(lua.LString(b))
	return 1
}

// mailMessageSetHeader: m:set_header(name, value)
func mailMessageSetHeader(L *lua.LState) int {
	m := checkMessage(L, 1)
	if err := m.SetHeader(L.CheckString(2), L.CheckString(3)); err != nil {
		L.RaiseError("mail.message:set_header: %s", mailErrorText(err, nil))
	}
	return 0
}

// mailMessageAddHeader: m:add_header(name, value)
func mailMessageAddHeader(L *lua.LState) int {
	m := checkMessage(L, 1)
	if err := m.AddHeader(L.CheckString(2), L.CheckString(3)); err != nil {
		L.RaiseError("mail.message:add_header: %s", mailErrorText(err, nil))
	}
	return 0
}

// mailMessageHeader: m:header(name) -> string | nil
func mailMessageHeader(L *lua.LState) int {
	m := checkMessage(L, 1)
	if v := m.Header(L.CheckString(2)); v != "" {
		L.Push(lua.LString(v))
	} else {
		L.Push(lua.LNil)
	}
	return 1
}

// mailMessageAttach: m:attach{path = | content =, filename =, content_type =, cid =}
// A cid makes the part inline.
func mailMessageAttach(L *lua.LState, opts *MailOptions) int {
	m := checkMessage(L, 1)
	a, inline, msg := mailAttachment(attachSpec(L, "attach"), opts, false)
	if msg != "" {
		L.RaiseError("mail.message:attach: %s", msg)
	}
	addAttachment(L, m, a, inline, "attach")
	return 0
}

// mailMessageAttachInline: m:attach_inline(content [, opts]) -> cid. The
// bytes (a chart's PNG, say) become an inline part for <img src="cid:...">;
// opts.cid names it (default: "part<N>" of the message's inline parts).
func mailMessageAttachInline(L *lua.LState, opts *MailOptions) int {
	m := checkMessage(L, 1)
	spec := attachSpec(L, "attach_inline")
	if spec.RawGetString("cid") == lua.LNil {
		spec.RawSetString("cid", lua.LString(freeCID(m)))
	}
	a, _, msg := mailAttachment(spec, opts, true)
	if msg != "" {
		L.RaiseError("mail.message:attach_inline: %s", msg)
	}
	addAttachment(L, m, a, true, "attach_inline")
	L.Push(lua.LString(a.ContentID))
	return 1
}

// freeCID returns the first "part<N>" that no inline part of m uses.
func freeCID(m *message.Message) string {
	for n := len(m.Inline) + 1; ; n++ {
		cid := fmt.Sprintf("part%d", n)
		used := false
		for _, a := range m.Inline {
			used = used || a.ContentID == cid
		}
		if !used {
			return cid
		}
	}
}

// attachSpec reads the arguments of m:attach and m:attach_inline: either
// one table {path= | content=, ...}, or the content as a string followed
// by an optional table of the other fields. It returns a fresh table the
// caller may change.
func attachSpec(L *lua.LState, method string) *lua.LTable {
	spec := L.NewTable()
	var rest *lua.LTable
	switch v := L.Get(2).(type) {
	case *lua.LTable:
		rest = v
	case lua.LString:
		spec.RawSetString("content", v)
		switch o := L.Get(3).(type) {
		case *lua.LNilType:
		case *lua.LTable:
			if o.RawGetString("content") != lua.LNil || o.RawGetString("path") != lua.LNil {
				L.RaiseError("mail.message:%s: give the content once: as the first argument or as content/path, not both", method)
			}
			rest = o
		default:
			L.RaiseError("mail.message:%s: bad argument #2: table of options expected, got %s", method, o.Type())
		}
	default:
		L.RaiseError("mail.message:%s: bad argument #1: content (string) or table expected, got %s", method, v.Type())
	}
	if rest != nil {
		rest.ForEach(func(k, v lua.LValue) { spec.RawSet(k, v) })
	}
	return spec
}

// addAttachment appends a to m's attachments or inline parts, keeping m
// unchanged when the message no longer validates.
func addAttachment(L *lua.LState, m *message.Message, a message.Attachment, inline bool, method string) {
	list := &m.Attachments
	if inline {
		list = &m.Inline
	}
	*list = append(*list, a)
	if err := m.Validate(); err != nil {
		// Keep the message as it was: the script may catch the error and
		// send the message anyway.
		*list = (*list)[:len(*list)-1]
		L.RaiseError("mail.message:%s: %s", method, mailErrorText(err, nil))
	}
}

// mailMessageRecipients: m:recipients() -> {addresses...}
func mailMessageRecipients(L *lua.LState) int {
	m := checkMessage(L, 1)
	rcpts, err := m.Recipients()
	if err != nil {
		L.RaiseError("mail.message:recipients: %s", mailErrorText(err, nil))
	}
	L.Push(mailList(L, rcpts))
	return 1
}

// mailMessageEnvelopeFrom: m:envelope_from() -> string
func mailMessageEnvelopeFrom(L *lua.LState) int {
	m := checkMessage(L, 1)
	from, err := m.EnvelopeFrom()
	if err != nil {
		L.RaiseError("mail.message:envelope_from: %s", mailErrorText(err, nil))
	}
	L.Push(lua.LString(from))
	return 1
}

// mailMessageToString: tostring(m) -> `mail.message(subject="...", from="...", recipients=2, attachments=1)`
func mailMessageToString(L *lua.LState) int {
	m := checkMessage(L, 1)
	L.Push(lua.LString(fmt.Sprintf("mail.message(subject=%q, from=%q, recipients=%d, attachments=%d)",
		m.Subject, m.From, len(m.To)+len(m.Cc)+len(m.Bcc), len(m.Attachments)+len(m.Inline))))
	return 1
}

// mailMessageField returns the read-only field key of m, or nil.
func mailMessageField(L *lua.LState, m *message.Message, key string) lua.LValue {
	str := func(s string) lua.LValue {
		if s == "" {
			return lua.LNil
		}
		return lua.LString(s)
	}
	switch key {
	case "subject":
		return str(m.Subject)
	case "from":
		return str(m.From)
	case "sender":
		return str(m.Sender)
	case "text":
		return str(m.Text)
	case "html":
		return str(m.HTML)
	case "message_id":
		return str(m.MessageID)
	case "to":
		return mailList(L, m.To)
	case "cc":
		return mailList(L, m.Cc)
	case "bcc":
		return mailList(L, m.Bcc)
	case "reply_to":
		return mailList(L, m.ReplyTo)
	case "date":
		if m.Date.IsZero() {
			return lua.LNil
		}
		return lua.LNumber(m.Date.Unix())
	}
	return lua.LNil
}

// mailList converts strings to a Lua list.
func mailList(L *lua.LState, ss []string) *lua.LTable {
	t := L.CreateTable(len(ss), 0)
	for _, s := range ss {
		t.Append(lua.LString(s))
	}
	return t
}

// mailSend: mail.send(m [, { account =, key =, from =, to = }]) -> id, duplicate
// Hands the message to the durable outbox and returns once it is safely on
// disk; delivery, with retries, happens in the background (mailbot run).
// The envelope comes from the message; key (default: the Message-ID) makes
// a second mail.send of the same report a no-op that returns the first id.
//
// mail.send({ m1, { msg = m2, key = ... }, ... } [, { account =, from =, to = }])
// -> { { id =, duplicate = }, ... } stores a list with one flush (see
// mailSendList).
func mailSend(L *lua.LState, opts *MailOptions) int {
	if t, ok := L.Get(1).(*lua.LTable); ok {
		return mailSendList(L, opts, t)
	}
	m := checkMessage(L, 1)
	o := L.OptTable(2, L.NewTable())
	if bad := unknownField(o, "account", "key", "from", "to"); bad != "" {
		L.RaiseError("mail.send: unknown option %q (known: account, key, from, to)", bad)
	}
	if opts.Outbox == nil {
		L.RaiseError("mail.send: this host has no outbox; run the script under mailbot run or mailbot exec -c <config>, or send directly with smtp.connect")
	}
	env, data, err := sendEnvelope(L, opts, m, o, nil)
	if err != nil {
		L.RaiseError("mail.send: %v", err)
	}
	id, dup, err := opts.Outbox.Enqueue(runContext(L), env, data)
	if err != nil {
		L.RaiseError("mail.send: %v", err)
	}
	L.Push(lua.LString(id))
	L.Push(lua.LBool(dup))
	return 2
}

// mailSendList is mail.send with a list: every item is a message or a
// table { msg = m, key =, account =, from =, to = }, and the optional
// second argument gives account, from and to for the items that set none.
// Every item is checked before anything is stored, so a bad item (named
// by its index) fails the whole call with nothing queued; then all of
// them are stored with one flush (outbox.EnqueueBatch), and the call
// returns once every message is durable.
func mailSendList(L *lua.LState, opts *MailOptions, list *lua.LTable) int {
	o := L.OptTable(2, L.NewTable())
	if lua.LVAsBool(L.GetField(o, "key")) {
		L.RaiseError("mail.send: option \"key\" cannot apply to a whole list; give each item its own: { msg = m, key = ... }")
	}
	if bad := unknownField(o, "account", "from", "to"); bad != "" {
		L.RaiseError("mail.send: unknown option %q for a list (known: account, from, to)", bad)
	}
	n := list.Len()
	if bad := unknownListKey(list, n); bad != "" {
		L.RaiseError("mail.send: the list has a non-index key %q; pass messages as { m1, m2, ... }", bad)
	}
	if opts.Outbox == nil {
		L.RaiseError("mail.send: this host has no outbox; run the script under mailbot run or mailbot exec -c <config>, or send directly with smtp.connect")
	}
	subs := make([]outbox.Submission, n)
	for i := 1; i <= n; i++ {
		v := list.RawGetInt(i)
		var (
			m    *message.Message
			item *lua.LTable
		)
		if mm, ok := messageFromValue(v); ok {
			m = mm
		} else if t, ok := v.(*lua.LTable); ok {
			if bad := unknownField(t, "msg", "account", "key", "from", "to"); bad != "" {
				L.RaiseError("mail.send: item %d: unknown field %q (known: msg, account, key, from, to)", i, bad)
			}
			mm, ok := messageFromValue(L.GetField(t, "msg"))
			if !ok {
				L.RaiseError("mail.send: item %d: field \"msg\" must be a mail.message, got %s", i, L.GetField(t, "msg").Type())
			}
			m, item = mm, t
		} else {
			L.RaiseError("mail.send: item %d: mail.message or { msg = m, key = ... } expected, got %s", i, v.Type())
		}
		env, data, err := sendEnvelope(L, opts, m, item, o)
		if err != nil {
			L.RaiseError("mail.send: item %d: %v", i, err)
		}
		subs[i-1] = outbox.Submission{Envelope: env, Data: data}
	}
	res, err := enqueueBatch(runContext(L), opts.Outbox, subs)
	if err != nil {
		L.RaiseError("mail.send: %v", err)
	}
	out := L.CreateTable(len(res), 0)
	for _, r := range res {
		t := L.CreateTable(0, 2)
		t.RawSetString("id", lua.LString(r.ID))
		t.RawSetString("duplicate", lua.LBool(r.Duplicate))
		out.Append(t)
	}
	L.Push(out)
	return 1
}

// BatchEnqueuer is an Enqueuer that stores many messages with one flush;
// *outbox.Outbox is one. mail.send with a list uses it when the host's
// Enqueuer has it, and calls Enqueue per message otherwise.
type BatchEnqueuer interface {
	EnqueueBatch(ctx context.Context, subs []outbox.Submission) ([]outbox.Enqueued, error)
}

func enqueueBatch(ctx context.Context, e Enqueuer, subs []outbox.Submission) ([]outbox.Enqueued, error) {
	if b, ok := e.(BatchEnqueuer); ok {
		return b.EnqueueBatch(ctx, subs)
	}
	res := make([]outbox.Enqueued, len(subs))
	for i, s := range subs {
		id, dup, err := e.Enqueue(ctx, s.Envelope, s.Data)
		if err != nil {
			return nil, fmt.Errorf("message %d of %d: %w", i+1, len(subs), err)
		}
		res[i] = outbox.Enqueued{ID: id, Duplicate: dup}
	}
	return res, nil
}

// sendEnvelope works out the envelope and bytes of one message for
// mail.send: fields of o (a message's options or a list item; may be
// nil) win over those of defaults (the options of a list; may be nil),
// which win over the message's own. It checks the account.
func sendEnvelope(L *lua.LState, opts *MailOptions, m *message.Message, o, defaults *lua.LTable) (outbox.Envelope, []byte, error) {
	field := func(name string) lua.LValue {
		if o != nil {
			if v := L.GetField(o, name); v != lua.LNil {
				return v
			}
		}
		if defaults != nil {
			return L.GetField(defaults, name)
		}
		return lua.LNil
	}
	account := opts.DefaultAccount
	if v, ok := field("account").(lua.LString); ok {
		account = string(v)
	}
	if account == "" {
		return outbox.Envelope{}, nil, errors.New("no account given and no default_account configured")
	}
	if opts.Accounts != nil && !opts.Accounts[account] {
		return outbox.Envelope{}, nil, fmt.Errorf("unknown account %q (configure it under accounts: in the config file)", account)
	}
	from, err := m.EnvelopeFrom()
	if err != nil {
		return outbox.Envelope{}, nil, err
	}
	to, err := m.Recipients()
	if err != nil {
		return outbox.Envelope{}, nil, err
	}
	if v, ok := field("from").(lua.LString); ok {
		from = string(v)
	}
	switch v := field("to").(type) {
	case lua.LString:
		to = []string{string(v)}
	case *lua.LTable:
		to = to[:0]
		for i := 1; i <= v.Len(); i++ {
			to = append(to, v.RawGetInt(i).String())
		}
	}
	data, err := m.Bytes() // fixes Date and Message-ID: retries send the same bytes
	if err != nil {
		return outbox.Envelope{}, nil, err
	}
	key := ""
	if o != nil {
		if v, ok := L.GetField(o, "key").(lua.LString); ok {
			key = string(v)
		}
	}
	return outbox.Envelope{Account: account, From: from, To: to, Key: key}, data, nil
}

// unknownField returns the first key of t not among known, or "" (the
// variadic form of unknownKey, for short lists).
func unknownField(t *lua.LTable, known ...string) string {
	var bad string
	t.ForEach(func(k, _ lua.LValue) {
		if bad == "" && !slices.Contains(known, k.String()) {
			bad = k.String()
		}
	})
	return bad
}

// unknownListKey returns the first key of list that is not an index
// 1..n, or "".
func unknownListKey(list *lua.LTable, n int) string {
	var bad string
	list.ForEach(func(k, _ lua.LValue) {
		if num, ok := k.(lua.LNumber); ok && float64(num) == math.Trunc(float64(num)) && num >= 1 && int(num) <= n {
			return
		}
		if bad == "" {
			bad = k.String()
		}
	})
	return bad
}

// runContext is the run's context, or Background outside a run.
func runContext(L *lua.LState) context.Context {
	if ctx := L.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// sniffType returns the media type of an attachment given without
// content_type whose file name says nothing (no name, or an extension
// without a registered type), when its bytes show an image or a PDF: a
// chart's PNG then arrives as image/png, which mail readers show inline.
// Otherwise it returns "" and the message package guesses from the name.
func sniffType(filename string, content []byte) string {
	if filename != "" && mime.TypeByExtension(filepath.Ext(filename)) != "" {
		return ""
	}
	t := http.DetectContentType(content)
	if strings.HasPrefix(t, "image/") || t == "application/pdf" {
		return t
	}
	return ""
}
