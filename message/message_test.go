package message

import (
	"bytes"
	"errors"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	zhSubject = "日报 2026-11-22"
	zhBody    = "各位好：\r\n\r\n今日共处理邮件 1024 封，失败 0 封。\r\n行尾空格保留  \r\n=等号与 café ☕ 也要原样返回。"
)

// allBytes is a binary attachment holding every byte value.
func allBytes() []byte {
	b := make([]byte, 256*3)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestStructureAndRoundTrip(t *testing.T) {
	png := allBytes()
	tests := []struct {
		name  string
		msg   Message
		shape string
		// leaves lists the expected decoded leaf bodies in order.
		leaves []string
		// ctes lists the expected transfer encodings of the leaves.
		ctes []string
	}{
		{
			name:   "ascii text only",
			msg:    Message{Text: "hello\r\nworld"},
			shape:  "text/plain",
			leaves: []string{"hello\r\nworld"},
			ctes:   []string{"7bit"},
		},
		{
			name:   "chinese text only",
			msg:    Message{Text: zhBody},
			shape:  "text/plain",
			leaves: []string{zhBody},
			ctes:   []string{"quoted-printable"},
		},
		{
			name:   "lf line breaks become crlf",
			msg:    Message{Text: "a\nb\rc\r\nd\n"},
			shape:  "text/plain",
			leaves: []string{"a\r\nb\r\nc\r\nd\r\n"},
			ctes:   []string{"7bit"},
		},
		{
			name:   "overlong ascii line uses quoted-printable",
			msg:    Message{Text: strings.Repeat("x", 1500)},
			shape:  "text/plain",
			leaves: []string{strings.Repeat("x", 1500)},
			ctes:   []string{"quoted-printable"},
		},
		{
			name:   "html only",
			msg:    Message{HTML: "<p>你好</p>"},
			shape:  "text/html",
			leaves: []string{"<p>你好</p>"},
			ctes:   []string{"quoted-printable"},
		},
		{
			name:   "no body",
			msg:    Message{},
			shape:  "text/plain",
			leaves: []string{""},
			ctes:   []string{"7bit"},
		},
		{
			name:   "text and html",
			msg:    Message{Text: zhBody, HTML: "<p>html</p>"},
			shape:  "multipart/alternative(text/plain,text/html)",
			leaves: []string{zhBody, "<p>html</p>"},
			ctes:   []string{"quoted-printable", "7bit"},
		},
		{
			name: "text and attachment",
			msg: Message{Text: "see attached", Attachments: []Attachment{
				{Filename: "report.csv", ContentType: "text/csv", Content: []byte("a,b\n1,2\n")}}},
			shape:  "multipart/mixed(text/plain,text/csv)",
			leaves: []string{"see attached", "a,b\n1,2\n"},
			ctes:   []string{"7bit", "base64"},
		},
		{
			name:   "attachment only",
			msg:    Message{Attachments: []Attachment{{Filename: "blob.bin", Content: png}}},
			shape:  "multipart/mixed(application/octet-stream)",
			leaves: []string{string(png)},
			ctes:   []string{"base64"},
		},
		{
			name: "everything",
			msg: Message{
				Text: "text", HTML: `<img src="cid:chart">`,
				Inline:      []Attachment{{Filename: "chart.png", ContentID: "chart", Content: png}},
				Attachments: []Attachment{{Filename: "日报.csv", ContentType: "text/csv", Content: []byte("x")}},
			},
			shape:  "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),text/csv)",
			leaves: []string{"text", `<img src="cid:chart">`, string(png), "x"},
			ctes:   []string{"7bit", "7bit", "base64", "base64"},
		},
		{
			name: "html with inline, no text",
			msg: Message{HTML: `<img src="cid:a"><img src="cid:b">`, Inline: []Attachment{
				{Filename: "a.gif", ContentID: "<a>", Content: []byte("GIF89a")},
				{ContentID: "b", ContentType: "image/jpeg", Content: []byte{0xff, 0xd8}}}},
			shape:  "multipart/related(text/html,image/gif,image/jpeg)",
			leaves: []string{`<img src="cid:a"><img src="cid:b">`, "GIF89a", "\xff\xd8"},
			ctes:   []string{"7bit", "base64", "base64"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg
			m.From = "Reports <reports@example.com>"
			m.To = []string{"a@example.com"}
			m.Subject = zhSubject
			raw := build(t, &m)
			msg, root := parseMessage(t, raw, foldLen)
			if got := decodeHeader(t, msg.Header.Get("Subject")); got != zhSubject {
				t.Errorf("Subject = %q, want %q", got, zhSubject)
			}
			if got := root.shape(); got != tc.shape {
				t.Errorf("shape = %s, want %s", got, tc.shape)
			}
			leaves := root.leaves()
			if len(leaves) != len(tc.leaves) {
				t.Fatalf("got %d leaves, want %d", len(leaves), len(tc.leaves))
			}
			for i, l := range leaves {
				if string(l.body) != tc.leaves[i] {
					t.Errorf("leaf %d body = %q, want %q", i, l.body, tc.leaves[i])
				}
				if l.cte != tc.ctes[i] {
					t.Errorf("leaf %d Content-Transfer-Encoding = %q, want %q", i, l.cte, tc.ctes[i])
				}
				if strings.HasPrefix(l.typ, "text/") && l.disp == "" && l.params["charset"] != "utf-8" {
					t.Errorf("leaf %d charset = %q, want utf-8", i, l.params["charset"])
				}
			}
		})
	}
}

func TestAttachmentHeaders(t *testing.T) {
	m := &Message{
		From: "a@example.com", HTML: "<img src=cid:logo>",
		Attachments: []Attachment{
			// .pdf and .png are in Go's built-in type table, so the guesses
			// do not depend on the system's mime.types.
			{Filename: "日报 2026-11-22.pdf", Content: []byte("1")},
			{Filename: `we"ird name.txt`, ContentType: "text/plain; charset=iso-8859-1", Content: []byte("2")},
			{Filename: "mail.eml", Content: []byte("3")},
			{Content: []byte("4")},
		},
		Inline: []Attachment{{Filename: "logo.png", ContentID: "logo@example.com", Content: []byte("5")}},
	}
	_, root := parseMessage(t, build(t, m), foldLen)
	type want struct{ typ, disp, filename, cid string }
	wants := []want{
		{"text/html", "", "", ""},
		{"image/png", "inline", "logo.png", "<logo@example.com>"},
		{"application/pdf", "attachment", "日报 2026-11-22.pdf", ""},
		{"text/plain", "attachment", `we"ird name.txt`, ""},
		// message/* may not be base64 encoded, so it is demoted.
		{"application/octet-stream", "attachment", "mail.eml", ""},
		{"application/octet-stream", "attachment", "", ""},
	}
	leaves := root.leaves()
	if len(leaves) != len(wants) {
		t.Fatalf("got %d leaves, want %d", len(leaves), len(wants))
	}
	for i, l := range leaves {
		got := want{l.typ, l.disp, l.filename, l.cid}
		if got != wants[i] {
			t.Errorf("leaf %d = %+v, want %+v", i, got, wants[i])
		}
	}
	if got := leaves[3].params["charset"]; got != "iso-8859-1" {
		t.Errorf("explicit charset parameter = %q, want iso-8859-1", got)
	}
	if got := leaves[2].params["name"]; got != "日报 2026-11-22.pdf" {
		t.Errorf("Content-Type name parameter = %q", got)
	}
}

func TestBase64Lines(t *testing.T) {
	m := &Message{From: "a@example.com", Attachments: []Attachment{{Filename: "x.bin", Content: bytes.Repeat(allBytes(), 10)}}}
	raw := build(t, m)
	_, body, _ := bytes.Cut(raw, []byte("Content-Transfer-Encoding: base64\r\n\r\n"))
	body, _, _ = bytes.Cut(body, []byte("\r\n--"))
	lines := bytes.Split(body, []byte("\r\n"))
	for i, l := range lines[:len(lines)-1] {
		if len(l) != 76 {
			t.Fatalf("base64 line %d has %d characters, want 76", i, len(l))
		}
	}
	if n := len(lines[len(lines)-1]); n == 0 || n > 76 {
		t.Errorf("last base64 line has %d characters", n)
	}
}

func TestBccNeverWritten(t *testing.T) {
	m := &Message{
		From: "a@example.com", To: []string{"to@example.com"}, Cc: []string{"cc@example.com"},
		Bcc:  []string{"Secret Person <hidden@example.net>", "TO@EXAMPLE.COM"},
		Text: "hi",
	}
	raw := build(t, m)
	for _, s := range []string{"Bcc", "bcc", "hidden", "Secret"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("output contains %q:\n%s", s, raw)
		}
	}
	got, err := m.Recipients()
	if err != nil {
		t.Fatal(err)
	}
	// TO@EXAMPLE.COM differs from to@example.com in its local part, which is
	// case-sensitive, so it is kept.
	want := []string{"to@example.com", "cc@example.com", "hidden@example.net", "TO@EXAMPLE.COM"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Recipients() = %q, want %q", got, want)
	}
}

func TestRecipients(t *testing.T) {
	tests := []struct {
		name       string
		to, cc, bc []string
		want       []string
		wantErr    string // Where() of the *AddressError
	}{
		{name: "none", want: nil},
		{name: "order and dedup", to: []string{"B <b@x.org>", "a@x.org"}, cc: []string{"a@X.ORG", "c@x.org"},
			bc: []string{"b@x.org"}, want: []string{"b@x.org", "a@x.org", "c@x.org"}},
		{name: "bad cc", to: []string{"a@x.org"}, cc: []string{"ok@x.org", "bob"}, wantErr: "cc[1]"},
		{name: "non-ascii address", bc: []string{"用户@例子.广告"}, wantErr: "bcc[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{To: tc.to, Cc: tc.cc, Bcc: tc.bc}
			got, err := m.Recipients()
			if tc.wantErr != "" {
				var ae *AddressError
				if !errors.As(err, &ae) || ae.Where() != tc.wantErr {
					t.Fatalf("error = %v, want *AddressError at %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Recipients() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestEnvelopeFrom(t *testing.T) {
	tests := []struct {
		from, sender string
		want         string
		wantErr      error
	}{
		{from: "Reports <reports@example.com>", want: "reports@example.com"},
		{from: "a@example.com", sender: "Bot <bot@example.org>", want: "bot@example.org"},
		{wantErr: ErrNoFrom},
	}
	for _, tc := range tests {
		m := &Message{From: tc.from, Sender: tc.sender}
		got, err := m.EnvelopeFrom()
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("EnvelopeFrom(%q, %q) = %q, %v; want %q, %v", tc.from, tc.sender, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestAddressFormatting(t *testing.T) {
	names := []string{"", "Plain Name", "张三", `Quote "Me", Inc.`, "Ünïcödé, with comma", strings.Repeat("很长的名字", 12)}
	var to []string
	for i, n := range names {
		to = append(to, (&mail.Address{Name: n, Address: "u" + string(rune('a'+i)) + "@example.com"}).String())
	}
	longName := strings.Repeat("报告机器人", 6)
	m := &Message{From: longName + " <zs@example.com>", To: to, ReplyTo: []string{"replies@example.com"}, Text: "x"}
	msg, _ := parseMessage(t, build(t, m), foldLen)
	got, err := msg.Header.AddressList("To")
	if err != nil {
		t.Fatalf("parse To: %v", err)
	}
	if len(got) != len(names) {
		t.Fatalf("got %d addresses, want %d", len(got), len(names))
	}
	for i, a := range got {
		if a.Name != names[i] {
			t.Errorf("To[%d] name = %q, want %q", i, a.Name, names[i])
		}
	}
	from, err := msg.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != longName || from[0].Address != "zs@example.com" {
		t.Errorf("From = %v, %v", from, err)
	}
	if got := msg.Header.Get("Reply-To"); got != "replies@example.com" {
		t.Errorf("Reply-To = %q", got)
	}
}

func TestAddressErrors(t *testing.T) {
	tests := []struct {
		name      string
		msg       Message
		wantWhere string
		wantText  string
	}{
		{"bad to", Message{From: "a@example.com", To: []string{"x@example.com", "y@example.com", "bob"}},
			"to[2]", `message: to[2]: invalid address "bob": mail: missing '@' or angle-addr`},
		{"bad from", Message{From: "not an address"}, "from", ""},
		{"bad sender", Message{From: "a@example.com", Sender: "@@"}, "sender", ""},
		{"bad reply-to", Message{From: "a@example.com", ReplyTo: []string{"<>"}}, "reply-to[0]", ""},
		{"bad bcc", Message{From: "a@example.com", Bcc: []string{"a@b", "c"}}, "bcc[1]", ""},
		{"two addresses in one entry", Message{From: "a@example.com", To: []string{"a@x.org, b@x.org"}}, "to[0]", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.msg.Bytes()
			var ae *AddressError
			if !errors.As(err, &ae) {
				t.Fatalf("error = %v, want *AddressError", err)
			}
			if ae.Where() != tc.wantWhere {
				t.Errorf("Where() = %q, want %q", ae.Where(), tc.wantWhere)
			}
			if tc.wantText != "" && err.Error() != tc.wantText {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.wantText)
			}
		})
	}
	if _, err := (&Message{}).Bytes(); !errors.Is(err, ErrNoFrom) {
		t.Errorf("message without From: error = %v, want ErrNoFrom", err)
	}
}

func TestHeaderInjection(t *testing.T) {
	base := func() *Message {
		return &Message{From: "a@example.com", To: []string{"b@example.com"}, Text: "x"}
	}
	tests := []struct {
		name     string
		mutate   func(m *Message) error // returns an immediate error, if any
		wantName string
	}{
		{"subject crlf", func(m *Message) error { m.Subject = "hi\r\nBcc: victim@example.org"; return nil }, "Subject"},
		{"subject lf", func(m *Message) error { m.Subject = "hi\nX: y"; return nil }, "Subject"},
		{"subject nul", func(m *Message) error { m.Subject = "hi\x00"; return nil }, "Subject"},
		{"from", func(m *Message) error { m.From = "a@example.com\r\nBcc: v@example.org"; return nil }, "From"},
		{"to entry", func(m *Message) error { m.To = append(m.To, "c@example.com\nBcc: v@example.org"); return nil }, "To"},
		{"cc entry", func(m *Message) error { m.Cc = []string{"Name\r <c@example.com>"}; return nil }, "Cc"},
		{"message id", func(m *Message) error { m.MessageID = "<a@b>\r\nX: y"; return nil }, "Message-ID"},
		{"filename", func(m *Message) error {
			m.Attach(Attachment{Filename: "a.txt\r\nContent-Type: text/html", Content: []byte("x")})
			return nil
		}, "Content-Disposition"},
		{"content type", func(m *Message) error {
			m.Attach(Attachment{Filename: "a.txt", ContentType: "text/plain\r\nX-Evil: 1", Content: []byte("x")})
			return nil
		}, "Content-Type"},
		{"cid", func(m *Message) error {
			m.HTML = "<p>"
			m.Inline = []Attachment{{ContentID: "x>\r\nX-Evil: <y", Content: []byte("x")}}
			return nil
		}, "Content-ID"},
		{"custom value", func(m *Message) error { return m.SetHeader("X-Report", "daily\r\nBcc: v@example.org") }, "X-Report"},
		{"custom value lf only", func(m *Message) error { return m.AddHeader("X-Report", "daily\nX: y") }, "X-Report"},
		{"custom name", func(m *Message) error { return m.SetHeader("X-A\r\nBcc", "v") }, "X-A\r\nBcc"},
		{"set subject header", func(m *Message) error { return m.SetHeader("Subject", "a\rb") }, "Subject"},
		{"set to header", func(m *Message) error { return m.SetHeader("To", "a@example.com\r\n") }, "To"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			err := tc.mutate(m)
			if err == nil {
				_, err = m.Bytes()
			}
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("error = %v, want *HeaderError", err)
			}
			if !errors.Is(err, ErrHeaderInjection) {
				t.Errorf("error %v does not wrap ErrHeaderInjection", err)
			}
			if he.Name != tc.wantName {
				t.Errorf("HeaderError.Name = %q, want %q", he.Name, tc.wantName)
			}
		})
	}
}

func TestInvalidHeaders(t *testing.T) {
	tests := []struct {
		name string
		call func(m *Message) error
	}{
		{"empty name", func(m *Message) error { return m.SetHeader("", "x") }},
		{"colon in name", func(m *Message) error { return m.SetHeader("X:Y", "x") }},
		{"space in name", func(m *Message) error { return m.SetHeader("X Y", "x") }},
		{"non-ascii name", func(m *Message) error { return m.SetHeader("X-日报", "x") }},
		{"invalid utf-8 value", func(m *Message) error { return m.SetHeader("X-A", "\xff") }},
		{"builder-owned content-type", func(m *Message) error { return m.SetHeader("Content-Type", "text/html") }},
		{"builder-owned mime-version", func(m *Message) error { return m.AddHeader("mime-version", "1.0") }},
		{"second subject", func(m *Message) error { m.Subject = "a"; return m.AddHeader("Subject", "b") }},
		{"bad date", func(m *Message) error { return m.SetHeader("Date", "yesterday") }},
		{"bad message id", func(m *Message) error { return m.SetHeader("Message-ID", "<a b@c>") }},
		{"unfoldable custom header", func(m *Message) error {
			if err := m.SetHeader("X-Long", strings.Repeat("x", 1200)); err != nil {
				return err
			}
			_, err := m.Bytes()
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{From: "a@example.com"}
			err := tc.call(m)
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("error = %v, want *HeaderError", err)
			}
			if errors.Is(err, ErrHeaderInjection) {
				t.Errorf("error %v wraps ErrHeaderInjection, but nothing was injected", err)
			}
		})
	}
}

func TestAttachmentErrors(t *testing.T) {
	tests := []struct {
		name       string
		msg        Message
		wantInline bool
		wantIndex  int
	}{
		{"bad content type", Message{Attachments: []Attachment{{}, {ContentType: "text/"}}}, false, 1},
		{"multipart attachment", Message{Attachments: []Attachment{{ContentType: "multipart/mixed"}}}, false, 0},
		{"inline without html", Message{Text: "x", Inline: []Attachment{{ContentID: "a"}}}, true, 0},
		{"inline without cid", Message{HTML: "x", Inline: []Attachment{{ContentID: "a"}, {Filename: "b.png"}}}, true, 1},
		{"cid with space", Message{HTML: "x", Inline: []Attachment{{ContentID: "a b"}}}, true, 0},
		{"duplicate cid", Message{HTML: "x", Inline: []Attachment{{ContentID: "a"}, {ContentID: "<a>"}}}, true, 1},
		{"unfoldable filename", Message{Attachments: []Attachment{{Filename: strings.Repeat("名", 400)}}}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg
			m.From = "a@example.com"
			err := m.Validate()
			var ae *AttachmentError
			if !errors.As(err, &ae) {
				t.Fatalf("error = %v, want *AttachmentError", err)
			}
			if ae.Inline != tc.wantInline || ae.Index != tc.wantIndex {
				t.Errorf("AttachmentError at inline=%v index=%d, want inline=%v index=%d", ae.Inline, ae.Index, tc.wantInline, tc.wantIndex)
			}
		})
	}
}

func TestSubjectFolding(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		maxLine int
	}{
		{"short ascii", "daily report", foldLen},
		{"long ascii words", strings.Repeat("report line ", 30), foldLen},
		{"ascii with double spaces", "a  b" + strings.Repeat(" word", 40) + "  end", foldLen},
		{"long chinese", strings.Repeat(zhSubject+"，", 20), foldLen},
		{"mixed latin", strings.Repeat("Grüße aus Köln – ", 10), foldLen},
		{"leading and trailing spaces", "  padded  ", foldLen},
		{"control character", "bell\x07", foldLen},
		{"tab", "a\tb", foldLen},
		// A single 2000-octet word cannot be folded as it is; it is encoded
		// so it can be split.
		{"unbreakable ascii", strings.Repeat("x", 2000), foldLen},
		{"long url", "see https://example.com/" + strings.Repeat("p", 120), maxLineLen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{From: "a@example.com", Subject: tc.subject, Text: "x"}
			msg, _ := parseMessage(t, build(t, m), tc.maxLine)
			if got := decodeHeader(t, msg.Header.Get("Subject")); got != tc.subject {
				t.Errorf("Subject = %q, want %q", got, tc.subject)
			}
		})
	}
}

func TestEncodeWordsLimits(t *testing.T) {
	for _, s := range []string{"a", "日", strings.Repeat("日本語", 40), strings.Repeat("é", 100), strings.Repeat("a b=?_", 50)} {
		for _, first := range []int{0, 10, 28, 60, 75, 200} {
			words := encodeWords(s, first)
			for i, w := range words {
				if len(w) > maxWordLen {
					t.Errorf("encodeWords(%q, %d)[%d] is %d octets, want <= 75", s, first, i, len(w))
				}
			}
			if got := decodeHeader(t, strings.Join(words, " ")); got != s {
				t.Errorf("encodeWords(%q, %d) decodes to %q", s, first, got)
			}
		}
	}
}

func TestCustomHeaders(t *testing.T) {
	m := &Message{From: "a@example.com", Text: "x"}
	steps := []struct {
		op, name, value string
	}{
		{"set", "X-Report", "daily"},
		{"add", "X-Tag", "one"},
		{"add", "X-Tag", "two"},
		{"set", "x-report", "weekly"}, // replaces in place, any case
		{"add", "X-Zh", "日报"},
		{"set", "Subject", "via SetHeader"},
		{"set", "To", "A <a@example.com>, b@example.com"},
		{"add", "Cc", "c@example.com"},
		{"set", "Bcc", "hidden@example.com"},
		{"set", "Date", "Sun, 22 Nov 2026 08:30:00 +0800"},
		{"set", "Message-ID", "<fixed@example.com>"},
	}
	for _, s := range steps {
		var err error
		if s.op == "set" {
			err = m.SetHeader(s.name, s.value)
		} else {
			err = m.AddHeader(s.name, s.value)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", s.op, s.name, err)
		}
	}
	if got := m.Header("X-REPORT"); got != "weekly" {
		t.Errorf("Header(X-REPORT) = %q", got)
	}
	if got := m.Header("To"); got != `"A" <a@example.com>, b@example.com` {
		t.Errorf("Header(To) = %q", got)
	}
	raw := build(t, m)
	msg, _ := parseMessage(t, raw, foldLen)
	checks := map[string][]string{
		"X-Report":   {"weekly"},
		"X-Tag":      {"one", "two"},
		"Subject":    {"via SetHeader"},
		"Cc":         {"c@example.com"},
		"Date":       {"Sun, 22 Nov 2026 08:30:00 +0800"},
		"Message-Id": {"<fixed@example.com>"},
	}
	for k, want := range checks {
		if got := msg.Header[k]; !reflect.DeepEqual(got, want) {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if got := decodeHeader(t, msg.Header.Get("X-Zh")); got != "日报" {
		t.Errorf("X-Zh = %q", got)
	}
	// Custom headers keep their order: X-Report before X-Tag before X-Zh.
	if i, j, k := bytes.Index(raw, []byte("X-Report:")), bytes.Index(raw, []byte("X-Tag:")), bytes.Index(raw, []byte("X-Zh:")); !(i < j && j < k) {
		t.Errorf("custom headers out of order: %d %d %d", i, j, k)
	}
	if bytes.Contains(raw, []byte("hidden")) {
		t.Error("Bcc set through SetHeader leaked into the output")
	}
	m.DelHeader("X-Tag")
	m.DelHeader("Subject")
	if m.Header("X-Tag") != "" || m.Subject != "" {
		t.Errorf("DelHeader left X-Tag=%q Subject=%q", m.Header("X-Tag"), m.Subject)
	}
}

func TestDefaultsAndStability(t *testing.T) {
	m := &Message{From: "Reports <reports@example.com>", To: []string{"a@example.com"}, Text: "x", HTML: "<p>x</p>",
		Attachments: []Attachment{{Filename: "a.txt", Content: []byte("a")}}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if !m.Date.IsZero() || m.MessageID != "" {
		t.Fatalf("Validate changed the message: Date=%v MessageID=%q", m.Date, m.MessageID)
	}
	first := build(t, m)
	msg, _ := parseMessage(t, first, foldLen)
	if d, err := msg.Header.Date(); err != nil || !d.Equal(fixedNow) {
		t.Errorf("Date = %v, %v; want %v", d, err, fixedNow)
	}
	id := msg.Header.Get("Message-ID")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") || len(id) != len("<@example.com>")+32 {
		t.Errorf("Message-ID = %q, want <32 hex digits@example.com>", id)
	}
	if !m.Date.Equal(fixedNow) || "<"+m.MessageID+">" != id {
		t.Errorf("message fields not filled in: Date=%v MessageID=%q", m.Date, m.MessageID)
	}
	// Later builds reuse Date, Message-ID and boundaries even though the
	// clock and randomness moved on.
	m.Now = func() time.Time { return fixedNow.Add(time.Hour) }
	m.Rand = &seqReader{n: 99}
	second, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Errorf("second build differs:\n%s\n---\n%s", first, second)
	}
	var buf bytes.Buffer
	n, err := m.WriteTo(&buf)
	if err != nil || n != int64(len(first)) || !bytes.Equal(buf.Bytes(), first) {
		t.Errorf("WriteTo = %d, %v; bytes equal: %v", n, err, bytes.Equal(buf.Bytes(), first))
	}
}

func TestBoundaryAvoidsContent(t *testing.T) {
	m := &Message{From: "a@example.com", Text: "x", HTML: "y"}
	build(t, m)
	b := m.boundaries[kindAlternative]
	if b == "" {
		t.Fatal("no alternative boundary recorded")
	}
	// Put the boundary the same randomness would produce into the body.
	m2 := &Message{From: "a@example.com", Text: "--" + b + "\r\n", HTML: "y"}
	msg, root := parseMessage(t, build(t, m2), maxLineLen)
	_ = msg
	if m2.boundaries[kindAlternative] == b {
		t.Fatalf("boundary %q reused although the body contains it", b)
	}
	if got := string(root.leaves()[0].body); got != m2.Text {
		t.Errorf("text = %q, want %q", got, m2.Text)
	}
}

func TestWriteToLeavesWriterUntouchedOnError(t *testing.T) {
	var buf bytes.Buffer
	m := &Message{From: "a@example.com", Subject: "x\r\ny"}
	if n, err := m.WriteTo(&buf); err == nil || n != 0 || buf.Len() != 0 {
		t.Errorf("WriteTo = %d, %v with %d bytes written; want an error and nothing written", n, err, buf.Len())
	}
}

func TestAttachFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "图表.png")
	if err := os.WriteFile(path, allBytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := AttachFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Filename != "图表.png" || a.ContentType != "image/png" || !bytes.Equal(a.Content, allBytes()) {
		t.Errorf("AttachFile = %q, %q, %d bytes", a.Filename, a.ContentType, len(a.Content))
	}
	if _, err := AttachFile(filepath.Join(dir, "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: error = %v, want os.ErrNotExist", err)
	}
}

func BenchmarkBytes1MBAttachment(b *testing.B) {
	data := bytes.Repeat(allBytes(), (1<<20)/768+1)[:1<<20]
	m := &Message{
		From: "Reports <reports@example.com>", To: []string{"a@example.com"}, Subject: zhSubject,
		Text: zhBody, Attachments: []Attachment{{Filename: "data.bin", Content: data}},
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Bytes(); err != nil {
			b.Fatal(err)
		}
	}
}
