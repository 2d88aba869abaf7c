package luabind

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
)

// TestReportMail builds the message a report script sends: an HTML body
// with an inline chart and an xlsx attachment, and checks its MIME shape.
func TestReportMail(t *testing.T) {
	L := newTestState(t, Options{})
	raw := evalString(t, L, `
		local chart, xlsx, mail = require("chart"), require("xlsx"), require("mail")
		local png = chart.bar{ title = "Mails per relay", x = { "mx1", "mx2" },
			series = { { name = "sent", values = { 120, 80 } } }, width = 400, height = 200 }
		local book = xlsx.new()
		local s = book:sheet("Relays")
		s:header{ "relay", "sent" }
		s:append{ "mx1", 120 }
		s:append{ "mx2", 80 }
		local m = mail.message{
			from = "reports@example.com", to = "ops@example.com", subject = "Daily report",
			html = '<p>Today:</p><img src="cid:relays">',
		}
		m:attach{ content = png, filename = "relays.png", content_type = "image/png", cid = "relays" }
		m:attach{ content = book:bytes(), filename = "report.xlsx", content_type = xlsx.content_type }
		return m:as_string()`)
	_, shape, parts := mailDecode(t, []byte(raw))
	want := "multipart/mixed(multipart/related(text/html,image/png)," + xlsxMediaType + ")"
	if shape != want {
		t.Fatalf("shape = %s\nwant    %s", shape, want)
	}
	html, img, book := parts[0], parts[1], parts[2]
	if !bytes.Contains(html.body, []byte(`src="cid:relays"`)) || img.cid != "<relays>" || img.disp != "inline" {
		t.Errorf("the HTML does not reference the inline image: html %q, image cid %q disposition %q", html.body, img.cid, img.disp)
	}
	if pic, err := png.Decode(bytes.NewReader(img.body)); err != nil || pic.Bounds().Dx() != 400 {
		t.Errorf("inline part is not the 400 px chart: %v", err)
	}
	if book.disp != "attachment" || book.filename != "report.xlsx" {
		t.Errorf("xlsx part: disposition %q, filename %q", book.disp, book.filename)
	}
	f := openXLSXBytes(t, string(book.body))
	if v, err := f.GetCellValue("Relays", "B3"); err != nil || v != "80" {
		t.Errorf("attached workbook: Relays!B3 = %q, %v", v, err)
	}
}

// TestAttachInline covers m:attach_inline and m:attach with the content
// first: the chart's bytes go in as they are, the media type comes from
// the bytes when no name or content_type says it, and the cid is returned.
func TestAttachInline(t *testing.T) {
	L := newTestState(t, Options{})
	raw := evalString(t, L, `
		local chart, mail = require("chart"), require("mail")
		local png = chart.line{ x = { "a", "b" }, series = { { name = "n", values = { 1, 2 } } }, width = 200, height = 100 }
		local m = mail.message{ from = "r@example.com", to = "o@example.com", subject = "s",
			html = '<img src="cid:trend"><img src="cid:part2">' }
		assert(m:attach_inline(png, { cid = "trend" }) == "trend")
		assert(m:attach_inline(png) == "part2")
		m:attach("a,b\n1,2\n", { filename = "data.csv" })
		return m:as_string()`)
	_, shape, parts := mailDecode(t, []byte(raw))
	want := "multipart/mixed(multipart/related(text/html,image/png,image/png),text/csv)"
	if shape != want {
		t.Fatalf("shape = %s\nwant    %s", shape, want)
	}
	if parts[1].cid != "<trend>" || parts[2].cid != "<part2>" || parts[1].disp != "inline" {
		t.Errorf("inline parts: cids %q %q, disposition %q", parts[1].cid, parts[2].cid, parts[1].disp)
	}
	if string(parts[3].body) != "a,b\n1,2\n" || parts[3].filename != "data.csv" {
		t.Errorf("csv attachment: %q named %q", parts[3].body, parts[3].filename)
	}

	for _, tc := range []struct{ src, want string }{
		{`m:attach_inline(42)`, "content (string) or table expected, got number"},
		{`m:attach("x", { content = "y" })`, "give the content once"},
		{`m:attach_inline("x", { bogus = 1 })`, "bogus"},
	} {
		err := L.DoString(`local m = require("mail").message{ from = "r@example.com", to = "o@example.com" }; ` + tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
}
