#!/usr/bin/env bash
# Throwaway services for a study that spans processes or hosts, all on 127.0.0.1:
#   a PostgreSQL server (Debian's `postgresql` package; initdb in .services/pg) holding the Optuna study and
#   MLflow's runs, and an `mlflow server` backed by it.
# Usage: scripts/services.sh start | stop | status | env | db-stop | db-start
#   env       the `export` lines for OPTUNA_STORAGE and MLFLOW_TRACKING_URI: eval "$(scripts/services.sh env)"
#             puts the URLs in a shell's environment without the password ever being shown or typed
#   db-stop, db-start  stop and start PostgreSQL alone (a store outage drill; the tests use them)
# Ports: PGPORT (default 55432) and MLFLOW_PORT (default 55000). Everything lives in SERVICES_DIR (default .services/,
# ignored by git). MLFLOW_WORKERS (default 4, mlflow's own) sets the server's worker processes: each imports mlflow
# for about 10 s of CPU, so a test on a small machine starts faster with 1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${SERVICES_DIR:-$ROOT/.services}"
PGDATA="$DIR/pg"
PGPORT="${PGPORT:-55432}"
MLFLOW_PORT="${MLFLOW_PORT:-55000}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-4}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DB_USER=study

die() { echo "services: $*" >&2; exit 1; }

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bin" ] || die "PostgreSQL is not installed; fix: apt-get install postgresql (or: make services as root installs it)"
  echo "$bin"
}

# PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user that Debian's package creates.
as_db_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

password() { cat "$DIR/pg.password"; }
optuna_url() { echo "postgresql://$DB_USER:$(password)@127.0.0.1:$PGPORT/optuna"; }
mlflow_backend_url() { echo "postgresql://$DB_USER:$(password)@127.0.0.1:$PGPORT/mlflow"; }
mlflow_url() { echo "http://127.0.0.1:$MLFLOW_PORT"; }

start_postgres() {
  local bin; bin=$(pg_bin)
  mkdir -p "$DIR"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    # The password file is readable by its owner only: anyone who reads it can reach both databases.
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/pg.password")
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR" "$PGDATA" "$DIR/pg.password"
    as_db_owner "$bin/initdb" -D "$PGDATA" -U "$DB_USER" --auth=scram-sha-256 --pwfile="$DIR/pg.password" >"$DIR/initdb.log" \
      || die "initdb failed; see $DIR/initdb.log"
  fi
  if as_db_owner "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    return
  fi
  as_db_owner "$bin/pg_ctl" -D "$PGDATA" -l "$DIR/pg.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $DIR -c max_connections=200" start >/dev/null \
    || die "PostgreSQL did not start; see $DIR/pg.log"
  for database in optuna mlflow; do
    PGPASSWORD=$(password) "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U "$DB_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$database'" | grep -q 1 \
      || PGPASSWORD=$(password) "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U "$DB_USER" "$database"
  done
}

start_mlflow() {
  if [ -f "$DIR/mlflow.pid" ] && kill -0 "$(cat "$DIR/mlflow.pid")" 2>/dev/null; then
    return
  fi
  # MLflow 3 also starts ~7 "job execution" consumers (GenAI scorers; each a full mlflow import, ~250 MB) that
  # tracking never uses: off unless asked for, which halves start-up on a small machine.
  # setsid: the server and its workers form one process group, so `stop` ends them all.
  # The backend URL (with the database password) goes through the environment, never on the command line, where
  # every user of the machine could read it with ps.
  MLFLOW_BACKEND_STORE_URI="$(mlflow_backend_url)" \
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" setsid "$PYTHON" -m mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
    --artifacts-destination "$DIR/mlflow-artifacts" \
    >"$DIR/mlflow.log" 2>&1 < /dev/null &
  echo $! > "$DIR/mlflow.pid"
  for _ in $(seq 1 120); do
    if "$PYTHON" - "$(mlflow_url)/health" <<'PY' 2>/dev/null; then return; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PY
    kill -0 "$(cat "$DIR/mlflow.pid")" 2>/dev/null || die "mlflow server exited; see $DIR/mlflow.log"
    sleep 1
  done
  die "mlflow server did not answer within 120 s; see $DIR/mlflow.log"
}

stop_all() {
  if [ -f "$DIR/mlflow.pid" ]; then
    kill -- -"$(cat "$DIR/mlflow.pid")" 2>/dev/null || true
    rm -f "$DIR/mlflow.pid"
  fi
  if [ -f "$PGDATA/PG_VERSION" ]; then
    as_db_owner "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
  fi
}

print_env() {
  echo "export OPTUNA_STORAGE='$(optuna_url)'"
  echo "export MLFLOW_TRACKING_URI=$(mlflow_url)"
}

print_usage() {
  echo "services up: PostgreSQL on 127.0.0.1:$PGPORT (password in $DIR/pg.password), mlflow server at $(mlflow_url)"
  echo "put their URLs in this shell's environment (the password is never shown, typed or left in ps):"
  echo "  eval \"\$(scripts/services.sh env)\""
  echo "then run a worker (repeat on as many hosts/terminals as you like, each with the same environment):"
  echo "  python src/run.py -m sweep"
}

case "${1:-}" in
  start) start_postgres; start_mlflow; print_usage ;;
  stop) stop_all; echo "services stopped" ;;
  env) print_env ;;
  db-stop) as_db_owner "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null ;;
  db-start) start_postgres ;;
  status)
    as_db_owner "$(pg_bin)/pg_ctl" -D "$PGDATA" status || true
    if [ -f "$DIR/mlflow.pid" ] && kill -0 "$(cat "$DIR/mlflow.pid")" 2>/dev/null; then
      echo "mlflow server running (pid $(cat "$DIR/mlflow.pid"))"; else echo "mlflow server not running"; fi ;;
  *) die "usage: scripts/services.sh start | stop | status | env | db-stop | db-start" ;;
esac
