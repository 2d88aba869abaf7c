package luabind

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/internal/dkimtest"
	"github.com/mailbot/mailbot/message"
)

// TestAccountSignsEveryMessage sends with c:sendmail, c:send_message and
// c:data on clients connected with signing accounts (RSA and Ed25519) and
// with one that does not sign, and checks what the server received with
// go-msgauth's verifier.
func TestAccountSignsEveryMessage(t *testing.T) {
	srv := startDevServer(t, false)
	keys := map[string]crypto.Signer{"rsa": dkimtest.RSAKey(t), "ed25519": dkimtest.Ed25519Key(t)}
	base := Account{Host: "127.0.0.1", Port: port(t, srv.Addr()), RootCAs: srv.CertPool(),
		Username: "alice", Password: func() (string, error) { return "wonderland", nil }}
	accounts := map[string]Account{"plain": base}
	for name, key := range keys {
		s, err := message.NewDKIMSigner(message.DKIMOptions{Domain: "example.org", Selector: name, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		a := base
		a.Sign = s.Sign
		accounts[name] = a
	}
	broken := base
	broken.Sign = func([]byte) ([]byte, error) { return nil, errors.New("no header/body separator") }
	accounts["broken"] = broken
	L := NewState(Options{Modules: map[string]lua.LGFunction{
		"smtp": NewSMTPModule(SMTPOptions{Accounts: accounts}),
		"mail": NewMailModule(MailOptions{}),
	}})
	t.Cleanup(func() { CloseResources(L); L.Close() })
	err := L.DoString(`
local smtp, mail = require("smtp"), require("mail")
for _, acct in ipairs({"rsa", "ed25519", "plain"}) do
  local c = smtp.connect{account = acct}
  c:login()
  c:sendmail("alice@example.org", {"bob@example.org"},
    "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: " .. acct .. " via sendmail\r\n\r\nhello\r\n")
  c:send_message(mail.message{from = "alice@example.org", to = "bob@example.org",
    subject = acct .. " via send_message", text = "hi"})
  c:mail("alice@example.org")
  c:rcpt("bob@example.org")
  -- Bare LF line ends: the signature covers the CRLF the server gets.
  c:data("From: alice@example.org\nSubject: " .. acct .. " via data\n\nraw\n.dot line\n")
  c:quit()
end
local c = smtp.connect{account = "broken"}
c:login()
ok, err = pcall(c.sendmail, c, "alice@example.org", {"bob@example.org"}, "From: a@example.org\r\n\r\nx\r\n")
c:quit()`)
	if err != nil {
		t.Fatal(err)
	}
	if e := L.GetGlobal("err").String(); L.GetGlobal("ok") != lua.LFalse || !strings.Contains(e, `sendmail: DKIM-signing for account "broken": no header/body separator`) {
		t.Errorf("sendmail with a failing signer: ok=%v err=%s", L.GetGlobal("ok"), e)
	}
	got := map[string]int{}
	for _, m := range srv.Messages() {
		var subject string
		for _, acct := range []string{"rsa", "ed25519", "plain"} {
			for _, via := range []string{"sendmail", "send_message", "data"} {
				if bytes.Contains(m.Data, []byte("Subject: "+acct+" via "+via+"\r\n")) {
					subject = acct + " via " + via
					got[subject]++
				}
			}
		}
		if subject == "" {
			t.Errorf("unexpected message:\n%s", m.Data)
			continue
		}
		acct, _, _ := strings.Cut(subject, " ")
		if acct == "plain" {
			if bytes.Contains(m.Data, []byte("DKIM-Signature:")) {
				t.Errorf("%s: signed by an account without dkim:\n%s", subject, m.Data)
			}
			continue
		}
		if err := dkimtest.Verify(m.Data, keys[acct], "example.org", acct); err != nil {
			t.Errorf("%s: %v\n%s", subject, err, m.Data)
		}
		// The check can fail: the same message with its body changed.
		tampered := bytes.Replace(m.Data, []byte("\r\n\r\n"), []byte("\r\n\r\nP.S. "), 1)
		if err := dkimtest.Verify(tampered, keys[acct], "example.org", acct); err == nil {
			t.Errorf("%s: a changed body still verifies", subject)
		}
	}
	if len(got) != 9 {
		t.Errorf("messages received: %v, want 9 different ones", got)
	}
}
