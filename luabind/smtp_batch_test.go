package luabind

import (
	"bytes"
	"testing"
)

// TestSMTPSendBatch runs testdata/smtp_batch.lua against the dev server and
// checks what it stored.
func TestSMTPSendBatch(t *testing.T) {
	srv := startDevServer(t, false)
	L := newSMTPTestState(t, srv)
	runLuaTestFile(t, L, "testdata/smtp_batch.lua")
	count := map[string]int{}
	for _, m := range srv.Messages() {
		switch {
		case bytes.Contains(m.Data, []byte("Subject: window ")):
			count["window"]++
		case bytes.Contains(m.Data, []byte("Subject: batch ")), bytes.Contains(m.Data, []byte("batch message")):
			count["batch"]++
		case bytes.Equal(m.Data, []byte("Subject: data path\r\n\r\n.dot\r\n")):
			count["data"]++
		}
	}
	// Items 1, 3, 4, 6 and 10 of the mixed batch; 4 x 40 window items.
	if count["batch"] != 5 || count["window"] != 160 || count["data"] != 1 {
		t.Errorf("stored %v, want batch 5, window 160, data 1", count)
	}
}
