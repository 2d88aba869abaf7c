package message

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "update testdata/*.golden files")

// TestGolden pins the exact bytes of representative messages, built with a
// fixed clock and randomness. Run `go test ./message -update` after an
// intended change and review the diff.
func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
	}{
		{"plain", Message{
			From: "reports@example.com", To: []string{"ops@example.com"},
			Subject: "nightly", Text: "All jobs finished.\nNo failures.\n",
		}},
		{"chinese_alternative", Message{
			From: "日报机器人 <reports@example.com>", To: []string{"张三 <zhangsan@example.com>", "ops@example.com"},
			Cc: []string{`"Team, Ops" <team@example.com>`}, Bcc: []string{"audit@example.com"},
			Subject: "日报 2026-11-22", Text: zhBody, HTML: "<p>各位好：</p>\n<p>今日共处理邮件 <b>1024</b> 封。</p>\n",
		}},
		{"mixed_related", Message{
			From: "Reports <reports@example.com>", Sender: "bot@example.org", ReplyTo: []string{"ops@example.com"},
			To: []string{"a@example.com"}, Subject: "Weekly report with a rather long subject line that needs folding somewhere",
			Text: "See the chart.", HTML: `<p>See <img src="cid:chart"></p>`,
			Inline:      []Attachment{{Filename: "chart.png", ContentID: "chart", Content: allBytes()[:100]}},
			Attachments: []Attachment{{Filename: "日报.csv", ContentType: "text/csv", Content: []byte("date,count\r\n2026-11-22,1024\r\n")}},
			MessageID:   "report-2026-11-22@example.com",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg
			if tc.name == "mixed_related" {
				if err := m.SetHeader("X-Report", "weekly"); err != nil {
					t.Fatal(err)
				}
			}
			got := build(t, &m)
			parseMessage(t, got, foldLen)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}
