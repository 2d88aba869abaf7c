package luabind

import (
	"bytes"
	"image/png"
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
