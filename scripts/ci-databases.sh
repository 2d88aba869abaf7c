#!/usr/bin/env bash
# Starts private PostgreSQL and MariaDB servers for the sql module's tests.
#
#   scripts/ci-databases.sh start ENVFILE   # install if missing, start, write ENVFILE
#   scripts/ci-databases.sh stop ENVFILE    # stop the servers ENVFILE records
#
# Each server gets its own data folder under a temp folder, listens on
# 127.0.0.1 on a free port only, and has a test user with a random password
# and a database of its own; nothing system-wide is configured or started.
# ENVFILE, meant to be sourced, exports
#
#   MAILBOT_TEST_POSTGRES_DSN  postgres://mailbot:...@127.0.0.1:PORT/mailbot_test
#   MAILBOT_TEST_MYSQL_DSN     mailbot:...@tcp(127.0.0.1:PORT)/mailbot_test
#
# which the Go tests (sqldb, luabind) read; under CI=true they fail
# without them. The packages (postgresql, mariadb-server) are installed
# with apt-get when missing; that needs root, as does starting the
# servers as their own system users. Run again, start reuses servers that
# ENVFILE says are still running.
set -euo pipefail

cmd=${1:-}
envfile=${2:-}
if [ -z "$cmd" ] || [ -z "$envfile" ]; then
  echo "usage: $0 start|stop ENVFILE" >&2
  exit 2
fi
log() { printf '== ci-databases: %s\n' "$*"; }

# free_port prints a TCP port nothing listens on.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stop() {
  [ -f "$envfile" ] || return 0
  # shellcheck disable=SC1090
  . "$envfile"
  if [ -n "${MAILBOT_TEST_PG_DATA:-}" ] && [ -d "$MAILBOT_TEST_PG_DATA" ]; then
    su postgres -s /bin/sh -c "'$MAILBOT_TEST_PG_BIN/pg_ctl' -D '$MAILBOT_TEST_PG_DATA' -m fast -w stop" >/dev/null 2>&1 || true
  fi
  if [ -n "${MAILBOT_TEST_MYSQL_PID:-}" ] && kill -0 "$MAILBOT_TEST_MYSQL_PID" 2>/dev/null; then
    kill "$MAILBOT_TEST_MYSQL_PID"
    for _ in $(seq 1 100); do kill -0 "$MAILBOT_TEST_MYSQL_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -n "${MAILBOT_TEST_DB_WORK:-}" ]; then rm -rf "$MAILBOT_TEST_DB_WORK"; fi
  rm -f "$envfile"
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }

# Reuse servers from an earlier start that still answer.
if [ -f "$envfile" ]; then
  (
    # shellcheck disable=SC1090
    . "$envfile"
    psql "$MAILBOT_TEST_POSTGRES_DSN" -Atc 'select 1' >/dev/null 2>&1 &&
      kill -0 "$MAILBOT_TEST_MYSQL_PID" 2>/dev/null
  ) && { log "servers already running ($envfile)"; exit 0; }
  stop
fi

if [ "$(id -u)" != 0 ]; then
  echo "ci-databases: needs root (apt-get, and servers run as the postgres and mysql users)" >&2
  exit 1
fi

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
have_mariadb() { command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; }
if [ -z "$pgbin" ] || ! have_mariadb; then
  log "installing postgresql, mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  # The packages' own scripts would start system-wide servers: we start
  # private ones below.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql mariadb-server >/dev/null
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
installdb=$(command -v mariadb-install-db || command -v mysql_install_db)
client=$(command -v mariadb || command -v mysql)

work=$(mktemp -d /tmp/mailbot-ci-db.XXXXXX)
chmod 0755 "$work"
pgdata="$work/pg"
mypid=""
# On a failure below, stop what was started and remove the folder.
cleanup() {
  su postgres -s /bin/sh -c "'$pgbin/pg_ctl' -D '$pgdata' -m fast -w stop" >/dev/null 2>&1 || true
  if [ -n "$mypid" ]; then kill "$mypid" 2>/dev/null || true; wait "$mypid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup ERR
pass_pg="pg$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
pass_my="my$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

# --- PostgreSQL --------------------------------------------------------------
pgport=$(free_port)
mkdir -p "$pgdata" && chown postgres: "$pgdata"
log "postgres: initdb in $pgdata, port $pgport"
printf '%s\n' "$pass_pg" > "$work/pgpass"
chown postgres: "$work/pgpass" && chmod 0600 "$work/pgpass"
su postgres -s /bin/sh -c "'$pgbin/initdb' -D '$pgdata' -A scram-sha-256 --pwfile='$work/pgpass' -U postgres >/dev/null"
rm -f "$work/pgpass"
su postgres -s /bin/sh -c "'$pgbin/pg_ctl' -D '$pgdata' -w -l '$pgdata/log' -o \"-c listen_addresses=127.0.0.1 -p $pgport -k '$pgdata'\" start" >/dev/null
PGPASSWORD=$pass_pg psql -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL
CREATE USER mailbot PASSWORD '$pass_pg';
CREATE DATABASE mailbot_test OWNER mailbot;
SQL

# --- MariaDB -----------------------------------------------------------------
mydata="$work/mysql"
myport=$(free_port)
mkdir -p "$mydata" && chown mysql: "$mydata"
log "mariadb: install-db in $mydata, port $myport"
"$installdb" --user=mysql --datadir="$mydata" --auth-root-authentication-method=socket --skip-test-db >/dev/null 2>&1
"$mariadbd" --no-defaults --user=mysql --datadir="$mydata" --socket="$mydata/sock" \
  --port="$myport" --bind-address=127.0.0.1 --pid-file="$mydata/pid" \
  --log-error="$mydata/log" --skip-name-resolve >/dev/null 2>&1 &
mypid=$!
for _ in $(seq 1 100); do
  "$client" --no-defaults -S "$mydata/sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
  kill -0 "$mypid" 2>/dev/null || { cat "$mydata/log" >&2; exit 1; }
  sleep 0.1
done
"$client" --no-defaults -S "$mydata/sock" -uroot <<SQL
CREATE DATABASE mailbot_test;
CREATE USER 'mailbot'@'127.0.0.1' IDENTIFIED BY '$pass_my';
GRANT ALL ON mailbot_test.* TO 'mailbot'@'127.0.0.1';
SQL

trap - ERR
cat > "$envfile" <<EOF
export MAILBOT_TEST_POSTGRES_DSN='postgres://mailbot:$pass_pg@127.0.0.1:$pgport/mailbot_test?sslmode=disable'
export MAILBOT_TEST_MYSQL_DSN='mailbot:$pass_my@tcp(127.0.0.1:$myport)/mailbot_test'
export MAILBOT_TEST_PG_DATA='$pgdata'
export MAILBOT_TEST_PG_BIN='$pgbin'
export MAILBOT_TEST_MYSQL_PID='$mypid'
export MAILBOT_TEST_DB_WORK='$work'
EOF
log "ready: postgres on 127.0.0.1:$pgport, mariadb on 127.0.0.1:$myport (pid $mypid); env in $envfile"
