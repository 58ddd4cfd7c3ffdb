# Shared set-up for scripts/run and scripts/test: install what is missing, start what is stopped.
# Sourced, not run. Every step says what it does; nothing is downloaded but registry packages.

log() { printf 'lienthong setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || { log "no apt-get here: install $* yourself"; return 1; }
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # wait_port PORT SECONDS NAME
  local i
  for ((i = 0; i < $2 * 5; i++)); do port_open "$1" && return 0; sleep 0.2; done
  log "$3 did not open port $1 within $2 s"; return 1
}

ensure_python() {
  PYTHON=${PYTHON:-python3}
  if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    log "Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1 || echo none))"; return 1
  fi
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv 2>/dev/null || { apt_install python3-venv && "$PYTHON" -m venv .venv; }
  fi
  local stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    log "installing lienthong and its dev extra into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    rm -f .venv/.installed-*; touch "$stamp"
  fi
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port 5672 90 RabbitMQ
}

ensure_postgres() {
  port_open 5432 && return 0
  ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 60 PostgreSQL
  # the tests connect as postgres over TCP with trust auth, to database "test"
  as_root su postgres -c "psql -tAc \"select 1 from pg_database where datname='test'\" | grep -q 1 || createdb test" || true
}

ensure_promtool() {
  # promtool checks the alert rules and runs their tests (tests/unit/test_alert_rules.py);
  # Debian's prometheus package carries it. Never fails the run: without it, the tests read
  # the rules as YAML instead.
  command -v promtool >/dev/null && return 0
  command -v apt-get >/dev/null || { log "no apt-get: alert rules checked without promtool"; return 0; }
  # The package would start a Prometheus server: no service may start during the install.
  local policy=/usr/sbin/policy-rc.d made=0
  if [ ! -e "$policy" ] && printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null; then
    as_root chmod 755 "$policy"; made=1
  fi
  apt_install --no-install-recommends prometheus \
    || log "could not install prometheus (for promtool): alert rules checked without it"
  if [ "$made" = 1 ]; then as_root rm -f "$policy"; fi
  if command -v promtool >/dev/null; then  # nor at the next boot
    if [ -d /run/systemd/system ]; then as_root systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
    as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  return 0
}

ensure_browser() {
  # Headless Chromium for the console's browser tests (tests/browser.py): Debian's own build.
  # Playwright (the dev extra, installed by ensure_python) drives it and never downloads one.
  if [ ! -x /usr/bin/chromium ]; then
    apt_install --no-install-recommends chromium
  fi
  .venv/bin/python -c 'import playwright.async_api' 2>/dev/null ||
    .venv/bin/python -m pip install -q 'playwright>=1.45'
}

ensure_xmlsec1() {
  # xmlsec1 verifies large signed packages beside the streaming verifier
  # (tests/unit/test_stream_verify.py). Never fails the run: without it, those tests fail
  # and say why.
  command -v xmlsec1 >/dev/null && return 0
  command -v apt-get >/dev/null || { log "no apt-get: install xmlsec1 for the stream tests"; return 0; }
  apt_install --no-install-recommends xmlsec1 || log "could not install xmlsec1"
  return 0
}
