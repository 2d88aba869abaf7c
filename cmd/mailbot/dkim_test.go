package main

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/internal/dkimtest"
)

// writeDKIMKeys writes rsa.pem (PKCS #1), ed.pem (PKCS #8), short.pem
// (512-bit RSA) and cert.pem (not a key) into dir.
func writeDKIMKeys(t *testing.T, dir string) (rsaKey, edKey crypto.Signer) {
	t.Helper()
	rk, ek := dkimtest.RSAKey(t), dkimtest.Ed25519Key(t)
	writeFile(t, filepath.Join(dir, "rsa.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})))
	writeFile(t, filepath.Join(dir, "ed.pem"), string(dkimtest.PEM(t, ek)))
	writeFile(t, filepath.Join(dir, "short.pem"), dkimtest.ShortRSAPEM)
	writeFile(t, filepath.Join(dir, "cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	return rk, ek
}

func TestDKIMConfigValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeDKIMKeys(t, dir)
	const head = "scripts_dir: s\nstate_dir: st\naccounts:\n  relay:\n    host: h\n" // dkim starts at line 6
	tests := []struct {
		name string
		dkim string
		want []string
	}{
		{"rsa", "    dkim: {domain: example.com, selector: s1, private_key_file: rsa.pem}\n", nil},
		{"ed25519 with headers", "    dkim:\n      domain: example.com\n      selector: s1._v2\n      private_key_file: ed.pem\n      headers: [From, Subject]\n", nil},
		{"missing everything", "    dkim: {}\n", []string{
			"m.yaml:6: accounts.relay.dkim.domain: missing required value",
			"m.yaml:6: accounts.relay.dkim.selector: missing required value",
			"m.yaml:6: accounts.relay.dkim.private_key_file: missing required value: the private key's PEM file",
		}},
		{"empty section", "    dkim:\n", []string{"m.yaml:6: accounts.relay.dkim: empty dkim section; it needs domain, selector and private_key_file"}},
		{"bad names", "    dkim:\n      domain: example.com.\n      selector: \"s 1\"\n      private_key_file: rsa.pem\n", []string{
			`m.yaml:7: accounts.relay.dkim.domain: "example.com." is not a DNS name`,
			`m.yaml:8: accounts.relay.dkim.selector: "s 1" is not a DNS name`,
		}},
		{"headers without From", "    dkim:\n      domain: example.com\n      selector: s1\n      private_key_file: ed.pem\n      headers: [Subject, To]\n", []string{
			"m.yaml:10: accounts.relay.dkim.headers: the header list must include From (RFC 6376 section 5.4)",
		}},
		{"unreadable key", "    dkim:\n      domain: example.com\n      selector: s1\n      private_key_file: nope.pem\n", []string{
			"m.yaml:9: accounts.relay.dkim.private_key_file: cannot read key file: " + filepath.Join(dir, "nope.pem") + ": no such file or directory",
		}},
		{"short rsa key", "    dkim:\n      domain: example.com\n      selector: s1\n      private_key_file: short.pem\n", []string{
			"m.yaml:9: accounts.relay.dkim.private_key_file: " + filepath.Join(dir, "short.pem") + ": RSA key of 512 bits is too short",
		}},
		{"not a key", "    dkim:\n      domain: example.com\n      selector: s1\n      private_key_file: cert.pem\n", []string{
			`m.yaml:9: accounts.relay.dkim.private_key_file: ` + filepath.Join(dir, "cert.pem") + `: PEM block "CERTIFICATE" is not a private key`,
		}},
		{"unknown key", "    dkim:\n      domain: example.com\n      private_key: x\n", []string{
			"m.yaml:8: accounts.relay.dkim.private_key: unknown key (known keys: domain, selector, private_key_file, headers)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			cfg, err := ParseConfig(filepath.Join(dir, "m.yaml"), []byte(head+tc.dkim))
			if ce, ok := err.(*ConfigError); ok {
				for _, p := range ce.Problems {
					got = append(got, p.String())
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				for _, p := range cfg.Validate() {
					got = append(got, p.String())
				}
			}
			for i := range got {
				got[i] = strings.TrimPrefix(got[i], dir+string(filepath.Separator))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("problem %d:\n%s\nwant prefix:\n%s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestDKIMKeyIsSecret: private_key_file, nested in the dkim section, is
// in the secret registry, so scripts cannot read it.
func TestDKIMKeyIsSecret(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("/etc/mailbot/mailbot.yaml", []byte(`scripts_dir: s
state_dir: st
accounts:
  relay:
    host: h
    password_env: RELAY_PW
    dkim: {domain: example.com, selector: s1, private_key_file: keys/dkim.pem}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []SecretKey{
		{Path: []string{"accounts", "relay", "password_env"}, Kind: "env", Value: "RELAY_PW"},
		{Path: []string{"accounts", "relay", "dkim", "private_key_file"}, Kind: "file", Value: "/etc/mailbot/keys/dkim.pem"},
	}
	if got := cfg.SecretKeys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("SecretKeys = %+v, want %+v", got, want)
	}
}

// dkimRelayConfig writes a config with two signing accounts for srv:
// "rsa" and "ed", and their keys.
func dkimRelayConfig(t *testing.T, srv *devserver.Server) (dir string, rsaKey, edKey crypto.Signer) {
	t.Helper()
	dir = t.TempDir()
	rsaKey, edKey = writeDKIMKeys(t, dir)
	writeFile(t, filepath.Join(dir, "relay-ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	host, port, _ := net.SplitHostPort(srv.Addr())
	account := func(name, key, extra string) string {
		return fmt.Sprintf(`  %s:
    host: %s
    port: %s
    username: bot
    password_env: RELAY_PW
    ca_file: relay-ca.pem
    from: bot@example.org
    dkim:
      domain: example.org
      selector: %s
      private_key_file: %s
%s`, name, host, port, name, key, extra)
	}
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), "scripts_dir: scripts\nstate_dir: state\ndefault_account: rsa\naccounts:\n"+
		account("rsa", "rsa.pem", "")+account("ed", "ed.pem", "      headers: [From, Subject, Date]\n"))
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, rsaKey, edKey
}

// dkimVerifyWithRecord verifies msg with the TXT record dkim-record
// printed for selector.
func dkimVerifyWithRecord(t *testing.T, msg []byte, name, record string) error {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(q string) ([]string, error) {
			if q != name {
				return nil, fmt.Errorf("no record at %s", q)
			}
			return []string{record}, nil
		},
	})
	if err != nil {
		return err
	}
	if len(vs) != 1 {
		return fmt.Errorf("%d signatures, want 1", len(vs))
	}
	return vs[0].Err
}

// TestDKIMEndToEnd signs through every path of the CLI: mail.send
// delivered by the outbox (exec --deliver), c:send_message in a script,
// mailbot send --account and its dry run; dkim-record prints the record
// the verifier is given; scripts cannot read the key.
func TestDKIMEndToEnd(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{Users: map[string]string{"bot": "s3cret"}})
	dir, rsaKey, edKey := dkimRelayConfig(t, srv)
	keys := map[string]crypto.Signer{"rsa": rsaKey, "ed": edKey}

	if r := mailbot(t, dir, relayEnv, "check", "-c", "mailbot.yaml"); r.code != 0 {
		t.Fatalf("check: %v", r)
	}
	records := map[string][2]string{}
	for name := range keys {
		r := mailbot(t, dir, nil, "dkim-record", "-c", "mailbot.yaml", name)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 {
			t.Fatalf("dkim-record %s: %v", name, r)
		}
		f := strings.SplitN(lines[0], " TXT ", 2)
		if len(f) != 2 || f[0] != name+"._domainkey.example.org" {
			t.Fatalf("dkim-record %s: %q", name, lines[0])
		}
		records[name] = [2]string{f[0], f[1]}
		if !strings.HasPrefix(lines[1], f[0]+". 3600 IN TXT ") {
			t.Errorf("zone line %q", lines[1])
		}
		if _, ok := keys[name].(*rsa.PrivateKey); ok && !strings.Contains(lines[1], `" "`) {
			t.Errorf("a 2048-bit record must be split into strings of 255: %q", lines[1])
		}
	}

	writeFile(t, filepath.Join(dir, "scripts", "send.lua"), `
local mail, smtp, fs = require("mail"), require("smtp"), require("fs")
for _, acct in ipairs({"rsa", "ed"}) do
  mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org",
    subject = acct .. " via mail.send", text = "queued" }, { account = acct })
end
local c = smtp.connect{ account = "ed" }
c:login()
c:send_message(mail.message{ from = "bot@example.org", to = "ops@example.org",
  subject = "ed via send_message", text = "direct" })
c:quit()
local ok, err = pcall(fs.read, "../ed.pem")
print("key read:", ok, err)
`)
	r := mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "--deliver", "scripts/send.lua")
	if r.code != 0 {
		t.Fatalf("exec --deliver: %v", r)
	}
	if !strings.Contains(r.stdout, "key read:\tfalse") || !strings.Contains(r.stdout, "holds a secret of account ed; mailbot DKIM-signs the account's mail with it") {
		t.Errorf("the script could read the key file or got another error:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
		t.Errorf("key material in the output:\n%s%s", r.stdout, r.stderr)
	}

	r = mailbot(t, dir, relayEnv, "send", "-c", "mailbot.yaml", "--account", "rsa", "--to", "ops@example.org", "--subject", "rsa via send", "--body", "cli")
	if r.code != 0 {
		t.Fatalf("send: %v", r)
	}
	dry := filepath.Join(dir, "dry")
	r = mailbot(t, dir, nil, "send", "-c", "mailbot.yaml", "--account", "ed", "--dry-run", dry, "--to", "ops@example.org", "--subject", "ed via dry run", "--body", "cli")
	if r.code != 0 {
		t.Fatalf("send --dry-run: %v", r)
	}
	emls, _ := filepath.Glob(filepath.Join(dry, "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("dry run wrote %v", emls)
	}
	eml, err := os.ReadFile(emls[0])
	if err != nil {
		t.Fatal(err)
	}

	type got struct {
		acct string
		data []byte
	}
	msgs := []got{{"ed", eml}}

	// exec --dry-run signs too: the captured messages carry signatures.
	execDry := filepath.Join(dir, "exec-dry")
	r = mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "--dry-run", execDry, "--deliver", "scripts/send.lua")
	if r.code != 0 {
		t.Fatalf("exec --dry-run --deliver: %v", r)
	}
	emls, _ = filepath.Glob(filepath.Join(execDry, "*.eml"))
	if len(emls) != 3 {
		t.Fatalf("exec dry run wrote %v, want 3 messages", emls)
	}
	for _, p := range emls {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		acct, _, _ := strings.Cut(subject(t, b), " ")
		msgs = append(msgs, got{acct, b})
	}
	for _, m := range waitMessages(t, srv, 4) {
		acct, _, _ := strings.Cut(subject(t, m.Data), " ")
		msgs = append(msgs, got{acct, m.Data})
	}
	subjects := map[string]bool{}
	for _, m := range msgs {
		subjects[subject(t, m.data)] = true
		rec := records[m.acct]
		if err := dkimVerifyWithRecord(t, m.data, rec[0], rec[1]); err != nil {
			t.Errorf("%s: %v\n%s", subject(t, m.data), err, m.data)
		}
		tampered := bytes.Replace(m.data, []byte("\r\n\r\n"), []byte("\r\n\r\nP.S. "), 1)
		if err := dkimVerifyWithRecord(t, tampered, rec[0], rec[1]); err == nil {
			t.Errorf("%s: a changed body still verifies", subject(t, m.data))
		}
		// The ed account signs only its configured headers.
		if m.acct == "ed" && !strings.Contains(stripFWS(string(m.data)), "h=From:From:Subject:Date;") {
			t.Errorf("%s: headers option not used:\n%s", subject(t, m.data), m.data)
		}
	}
	for _, s := range []string{"rsa via mail.send", "ed via mail.send", "ed via send_message", "rsa via send", "ed via dry run"} {
		if !subjects[s] {
			t.Errorf("no message %q among %v", s, subjects)
		}
	}
}

func stripFWS(s string) string {
	return strings.NewReplacer(" ", "", "\t", "", "\r\n", "").Replace(s)
}
