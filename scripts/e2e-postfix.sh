#!/usr/bin/env bash
# End-to-end test of mailbot against a real MTA.
#
# Starts a private Postfix instance (its own config, queue and data
# directories under a temp folder) with a submission service on
# 127.0.0.1:1587 requiring STARTTLS (self-signed certificate made with
# openssl) and SASL AUTH through a private Dovecot auth service (passwd-file
# with one test user). Postfix delivers mail for e2e.test to a Maildir with
# its virtual(8) agent, so no system user or system config is touched.
#
# mailbot is then used the ways an operator would: probe, send, exec of a
# script, and run with an on_file script for a dropped file and an on_start
# script queueing through the durable outbox (mail.send). A python3
# checker reads the delivered Maildir and verifies each message arrived
# intact: UTF-8 subject decoded, attachment bytes equal.
#
# Needs root (apt-get, starting Postfix) and is skipped unless CI=true or
# MAILBOT_E2E is set. Everything it starts is stopped on exit; the packages
# stay installed.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "e2e-postfix: skipped: needs root (installs and starts Postfix and Dovecot)"
  exit 0
fi
if [ "${CI:-}" != "true" ] && [ -z "${MAILBOT_E2E:-}" ]; then
  echo "e2e-postfix: skipped: set MAILBOT_E2E=1 to run it (CI runs it with CI=true)"
  exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/local/go/bin:${PATH}"
PORT=1587
DOMAIN=e2e.test
USER_ADDR="mbuser@${DOMAIN}"
RCPT="rcpt@${DOMAIN}"
export E2E_PASSWORD="e2e-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf '== e2e-postfix: %s\n' "$*"; }
fail() { printf 'e2e-postfix: FAIL: %s\n' "$*" >&2; exit 1; }

# --- packages --------------------------------------------------------------
if ! command -v postfix >/dev/null || ! command -v dovecot >/dev/null || ! command -v openssl >/dev/null; then
  log "installing postfix, dovecot-core, openssl"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq postfix dovecot-core openssl >/dev/null
fi
command -v python3 >/dev/null || fail "python3 is needed for the checker"

WORK=$(mktemp -d /tmp/mailbot-e2e.XXXXXX)
chmod 0755 "$WORK"
PFCONF="$WORK/postfix/etc"
PFQUEUE="$WORK/postfix/queue"
DOVE="$WORK/dovecot"
VMAIL="$WORK/vmail"
MAILBOT_PID=""
POSTFIX_STARTED=""
DOVECOT_STARTED=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$MAILBOT_PID" ] && kill -0 "$MAILBOT_PID" 2>/dev/null; then
    kill -TERM "$MAILBOT_PID"; wait "$MAILBOT_PID" 2>/dev/null
  fi
  if [ -n "$POSTFIX_STARTED" ]; then
    postfix -c "$PFCONF" stop >/dev/null 2>&1 || postfix -c "$PFCONF" abort >/dev/null 2>&1
  fi
  if [ -n "$DOVECOT_STARTED" ]; then
    doveadm -c "$DOVE/dovecot.conf" stop >/dev/null 2>&1 ||
      { [ -f "$DOVE/run/master.pid" ] && kill "$(cat "$DOVE/run/master.pid")"; }
  fi
  # Wait for the daemons to be gone before removing their directories.
  for _ in $(seq 50); do
    if ! pgrep -f "$WORK" >/dev/null; then break; fi
    sleep 0.1
  done
  if [ $rc -ne 0 ]; then
    echo "---- postfix log"; tail -n 40 "$WORK/postfix/maillog" 2>/dev/null
    echo "---- dovecot log"; tail -n 20 "$DOVE/dovecot.log" 2>/dev/null
    echo "---- mailbot run log"; tail -n 40 "$WORK/mailbot-run.log" 2>/dev/null
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# --- mailbot ---------------------------------------------------------------
log "building mailbot"
(cd "$ROOT" && go build -o "$WORK/mailbot" ./cmd/mailbot)
MAILBOT="$WORK/mailbot"

# --- TLS -------------------------------------------------------------------
mkdir -p "$WORK/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
chmod 0644 "$WORK/tls/cert.pem"; chmod 0600 "$WORK/tls/key.pem"

# --- Dovecot: SASL authentication only -------------------------------------
mkdir -p "$DOVE/run" "$DOVE/state" "$PFQUEUE/private"
chown postfix "$PFQUEUE/private"
printf '%s:{PLAIN}%s\n' "$USER_ADDR" "$E2E_PASSWORD" > "$DOVE/passwd"
chmod 0640 "$DOVE/passwd"; chgrp dovecot "$DOVE/passwd"
cat > "$DOVE/dovecot.conf" <<EOF
protocols =
base_dir = $DOVE/run
state_dir = $DOVE/state
log_path = $DOVE/dovecot.log
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DOVE/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$VMAIL/%u
}
service auth {
  unix_listener $PFQUEUE/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
EOF
log "starting dovecot (auth only)"
dovecot -c "$DOVE/dovecot.conf"
DOVECOT_STARTED=1

# --- Postfix: private instance ----------------------------------------------
mkdir -p "$PFCONF" "$WORK/postfix/data" "$VMAIL"
chown postfix:postfix "$WORK/postfix/data"
chown 65534:65534 "$VMAIL"
printf '%s %s/Maildir/\n' "$RCPT" "rcpt" > "$PFCONF/vmailbox"
cat > "$PFCONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PFQUEUE
data_directory = $WORK/postfix/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = $WORK/postfix/maillog
maillog_file_prefixes = $WORK/postfix
myhostname = mx.$DOMAIN
mydomain = $DOMAIN
myorigin = $DOMAIN
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
default_transport = error:this test instance sends nothing outside $DOMAIN
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $VMAIL
virtual_mailbox_maps = texthash:$PFCONF/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
smtputf8_enable = yes
smtpd_tls_cert_file = $WORK/tls/cert.pem
smtpd_tls_key_file = $WORK/tls/key.pem
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
EOF
cat > "$PFCONF/master.cf" <<EOF
127.0.0.1:$PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
log "starting postfix on 127.0.0.1:$PORT"
# postfix(1) reports fatal errors only to syslog unless stderr is a terminal;
# script(1) provides one so a broken setup explains itself.
script -qec "postfix -c '$PFCONF' start" /dev/null || fail "postfix did not start"
POSTFIX_STARTED=1
for i in $(seq 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
  [ "$i" = 100 ] && fail "postfix is not listening on $PORT"
  sleep 0.1
done

# --- mailbot configuration and scripts --------------------------------------
mkdir -p "$WORK/bot/scripts" "$WORK/bot/tools" "$WORK/bot/drop" "$WORK/data"
head -c 70000 /dev/urandom > "$WORK/data/blob-exec.bin"
head -c 50000 /dev/urandom > "$WORK/data/blob-send.bin"
head -c 30000 /dev/urandom > "$WORK/data/blob-drop.bin"
head -c 40000 /dev/urandom > "$WORK/data/blob-outbox.bin"
cat > "$WORK/bot/mailbot.yaml" <<EOF
scripts_dir: scripts
state_dir: state
# Scripts read the test's data files (the drop folder is inside "."): under the strict
# sandbox only these folders (and state_dir/files) are open to them.
fs_roots: [".", "../data"]
log: { level: info }
default_account: relay
accounts:
  relay:
    host: localhost
    port: $PORT
    tls: starttls
    username: $USER_ADDR
    password_env: E2E_PASSWORD
    from: "mailbot e2e <$USER_ADDR>"
    ca_file: ../tls/cert.pem
    timeout: 20s
EOF
cat > "$WORK/bot/tools/send-once.lua" <<'EOF'
-- mailbot exec: send one message with a UTF-8 subject and a binary attachment.
local smtp = require("smtp")
local mail = require("mail")
local c = smtp.connect()
c:login()
c:send_message(mail.message{
  from = "mailbot e2e <mbuser@e2e.test>", to = { arg[1] },
  subject = arg[2], text = "exec test: Grüße, 你好\n",
  attachments = { { path = arg[3] } },
})
c:quit()
EOF
cat > "$WORK/bot/scripts/drop.lua" <<EOF
-- mailbot run: mail every dropped file as an attachment.
local smtp = require("smtp")
local mail = require("mail")
mailbot.on_file({ dir = "../drop", settle = "500ms", after = "move:done" }, function(ev)
  local c = smtp.connect()
  c:login()
  c:send_message(mail.message{
    from = "mailbot e2e <$USER_ADDR>", to = { "$RCPT" },
    subject = "Datei angekommen: " .. ev.name .. " ✓",
    text = "on_file test\n",
    attachments = { { path = ev.path } },
  })
  c:quit()
end)
EOF

cat > "$WORK/bot/scripts/outbox.lua" <<EOF
-- mailbot run: queue a message in the durable outbox at start; the key
-- keeps a restart from queueing it twice.
local mail = require("mail")
mailbot.on_start(function()
  mail.send(mail.message{
    from = "mailbot e2e <$USER_ADDR>", to = { "$RCPT" },
    subject = "Ausgang: über die Warteschlange ✓",
    text = "outbox test\n",
    attachments = { { path = "$WORK/data/blob-outbox.bin" } },
  }, { key = "e2e-outbox" })
end)
EOF

cd "$WORK/bot"
log "mailbot check"
"$MAILBOT" check -c mailbot.yaml

log "mailbot probe"
"$MAILBOT" probe "localhost:$PORT" --ca-file "$WORK/tls/cert.pem" | tee "$WORK/probe.out"
grep -q "STARTTLS" "$WORK/probe.out" || fail "probe: no STARTTLS"
grep -q "AUTH mechanisms: PLAIN LOGIN" "$WORK/probe.out" || fail "probe: AUTH PLAIN LOGIN not offered after STARTTLS"
grep -q "Certificate verification: OK" "$WORK/probe.out" || fail "probe: certificate did not verify with --ca-file"

log "mailbot exec (wrong password must exit 5)"
set +e
E2E_PASSWORD=wrong "$MAILBOT" exec -c mailbot.yaml tools/send-once.lua "$RCPT" "never" "$WORK/data/blob-exec.bin" 2>"$WORK/exec-bad.err"
rc=$?
set -e
[ $rc = 5 ] || { cat "$WORK/exec-bad.err"; fail "exec with a wrong password exited $rc, want 5"; }
grep -q "$E2E_PASSWORD" "$WORK/exec-bad.err" && fail "a password appeared in the output"

log "mailbot exec"
SUBJ_EXEC="mailbot exec: Grüße aus Köln — 你好 ✓"
"$MAILBOT" exec -c mailbot.yaml tools/send-once.lua "$RCPT" "$SUBJ_EXEC" "$WORK/data/blob-exec.bin"

log "mailbot send"
SUBJ_SEND="mailbot send: Ünïcödé subject ✓"
"$MAILBOT" send -c mailbot.yaml --account relay --to "$RCPT" --subject "$SUBJ_SEND" \
  --body "send test" --attach "$WORK/data/blob-send.bin"

log "mailbot run with an on_file script"
"$MAILBOT" run -c mailbot.yaml >"$WORK/mailbot-run.log" 2>&1 &
MAILBOT_PID=$!
for i in $(seq 100); do
  grep -q "engine started" "$WORK/mailbot-run.log" && break
  [ "$i" = 100 ] && fail "mailbot run did not start"
  sleep 0.1
done
cp "$WORK/data/blob-drop.bin" "$WORK/bot/drop/.blob-drop.bin.part"
mv "$WORK/bot/drop/.blob-drop.bin.part" "$WORK/bot/drop/blob-drop.bin"
SUBJ_DROP="Datei angekommen: blob-drop.bin ✓"
SUBJ_OUTBOX="Ausgang: über die Warteschlange ✓"

# --- verify deliveries -------------------------------------------------------
MAILDIR="$VMAIL/rcpt/Maildir"
log "waiting for 4 messages in $MAILDIR"
for i in $(seq 600); do
  n=$(find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null | wc -l)
  [ "$n" -ge 4 ] && break
  [ "$i" = 600 ] && { postqueue -c "$PFCONF" -p || true; cat "$WORK/mailbot-run.log"; fail "only $n of 4 messages were delivered"; }
  sleep 0.1
done

log "stopping mailbot run"
kill -TERM "$MAILBOT_PID"
set +e
wait "$MAILBOT_PID"
rc=$?
set -e
MAILBOT_PID=""
[ $rc = 0 ] || fail "mailbot run exited $rc on SIGTERM, want 0"
[ -f "$WORK/bot/drop/done/blob-drop.bin" ] || fail "the dropped file was not moved to done/"

log "checking the delivered messages"
python3 - "$MAILDIR" \
  "$SUBJ_EXEC|blob-exec.bin|$WORK/data/blob-exec.bin" \
  "$SUBJ_SEND|blob-send.bin|$WORK/data/blob-send.bin" \
  "$SUBJ_DROP|blob-drop.bin|$WORK/data/blob-drop.bin" \
  "$SUBJ_OUTBOX|blob-outbox.bin|$WORK/data/blob-outbox.bin" <<'PY'
import email, email.policy, glob, os, sys

maildir, expectations = sys.argv[1], sys.argv[2:]
msgs = []
for path in glob.glob(os.path.join(maildir, "new", "*")) + glob.glob(os.path.join(maildir, "cur", "*")):
    with open(path, "rb") as f:
        msgs.append(email.message_from_binary_file(f, policy=email.policy.default))
subjects = [str(m["subject"]) for m in msgs]
ok = True
for exp in expectations:
    subject, name, path = exp.split("|")
    want = open(path, "rb").read()
    found = [m for m in msgs if str(m["subject"]) == subject]
    if len(found) != 1:
        print(f"FAIL: want one message with subject {subject!r}, got {len(found)}; subjects: {subjects!r}")
        ok = False
        continue
    parts = [p for p in found[0].iter_attachments() if p.get_filename() == name]
    if len(parts) != 1:
        print(f"FAIL: {subject!r}: attachment {name} not found")
        ok = False
        continue
    got = parts[0].get_content()
    if got != want:
        print(f"FAIL: {subject!r}: attachment {name} differs ({len(got)} bytes, want {len(want)})")
        ok = False
        continue
    print(f"ok: {subject!r} with {name} ({len(want)} bytes intact)")
sys.exit(0 if ok else 1)
PY

log "PASS"
