package smtp_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

func TestSendBatchOverlapsMessages(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "batch"))
	c := dial(t, srv, plainDialer())
	var order []int
	var reported []smtp.BatchResult
	res := c.SendBatch(ctx, []smtp.Outgoing{
		{From: "bot@example.org", To: []string{"a@example.org"}, Data: []byte("Subject: 1\r\n\r\none\r\n")},
		{From: "bot@example.org", To: []string{"gone@example.org"}, Data: []byte("Subject: 2\r\n\r\ntwo\r\n")},
		{From: "bot@example.org", To: []string{"b@example.org", "busy@example.org"}, Data: []byte("Subject: 3\r\n\r\n.three\n")},
		{From: "bot@example.org", To: []string{"x@example.org\r\nRSET"}, Data: []byte("never sent")},
	}, func(i int, r smtp.BatchResult) {
		order = append(order, i)
		reported = append(reported, r)
	})
	quit(t, c)
	if fmt.Sprint(order) != "[0 1 2 3]" {
		t.Errorf("done called for %v, want each message once, in order", order)
	}
	for i := range reported {
		if fmt.Sprint(reported[i]) != fmt.Sprint(res[i]) {
			t.Errorf("done got %+v for message %d, the batch returned %+v", reported[i], i+1, res[i])
		}
	}
	waitServer(t, srv)
	if res[0].Err != nil || len(res[0].Refused) != 0 {
		t.Errorf("message 1: %+v", res[0])
	}
	var rr *smtp.RecipientsRefusedError
	if !errors.As(res[1].Err, &rr) || rr.Recipients["gone@example.org"].Code != 550 {
		t.Errorf("message 2: %v, want all recipients refused", res[1].Err)
	}
	if res[2].Err != nil || strings.Join(res[2].Refused.Temporary(), ",") != "busy@example.org" {
		t.Errorf("message 3: %+v, want accepted with busy@ refused temporarily", res[2])
	}
	if res[3].Err == nil || !strings.Contains(res[3].Err.Error(), "injection") {
		t.Errorf("message 4: %v, want the injection refused before sending", res[3].Err)
	}
	if got := string(srv.Data()[1]); got != "Subject: 3\r\n\r\n..three\r\n" {
		t.Errorf("third body on the wire: %q", got)
	}
}

func TestSendBatchDisconnectClassifiesEachMessage(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "batch_disconnect"))
	c := dial(t, srv, plainDialer())
	res := c.SendBatch(ctx, []smtp.Outgoing{
		{From: "bot@example.org", To: []string{"a@example.org"}, Data: []byte("one\r\n")},
		{From: "bot@example.org", To: []string{"b@example.org"}, Data: []byte("two\r\n")},
		{From: "bot@example.org", To: []string{"c@example.org"}, Data: []byte("three\r\n")},
	}, nil)
	waitServer(t, srv)
	var uo *smtp.UnknownOutcomeError
	if !errors.As(res[0].Err, &uo) {
		t.Errorf("message 1 = %v, want *UnknownOutcomeError (its dot was sent)", res[0].Err)
	}
	for i := 1; i < 3; i++ {
		var de *smtp.DisconnectedError
		if !errors.As(res[i].Err, &de) || errors.As(res[i].Err, &uo) {
			t.Errorf("message %d = %v, want *DisconnectedError: not delivered", i+1, res[i].Err)
		}
	}
}
