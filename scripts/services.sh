#!/usr/bin/env bash
# Find PostgreSQL and Redis for the test suites; on CI (or with JJ_INSTALL_SERVICES=1) install and
# start them from Debian's packages when they are missing. Prints the exports for the suites.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PG_URL=${JJ_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
REDIS_URL=${JJ_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
install=${JJ_INSTALL_SERVICES:-${CI:-false}}

pg_up() { $PY -c "import psycopg2,sys; psycopg2.connect(sys.argv[1], connect_timeout=3).close()" "$PG_URL" 2>/dev/null; }
redis_up() { $PY -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_timeout=3).ping()" "$REDIS_URL" 2>/dev/null; }

apt_ready=0
apt_install() {
  [ "$apt_ready" = 1 ] || { apt-get update -qq >&2 && apt_ready=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

if ! pg_up && [ "$install" = "true" -o "$install" = "1" ]; then
  echo "services: starting PostgreSQL" >&2
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$ver" ] && pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
  for _ in $(seq 1 20); do pg_up && break; sleep 1; done
  # Trust auth for local TCP, as the suites connect without a password.
  if ! pg_up && [ -n "$ver" ]; then
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    grep -q "jiaojing-tests" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust # jiaojing-tests' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 || true
    su postgres -c "psql -qc 'select 1' -d test" >/dev/null 2>&1 || su postgres -c "createdb test" >&2 || true
    sleep 1
  fi
fi
if ! redis_up && [ "$install" = "true" -o "$install" = "1" ]; then
  echo "services: starting Redis" >&2
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2 || true
  for _ in $(seq 1 10); do redis_up && break; sleep 1; done
fi

# Headless Chromium for the console's browser tests: Debian's chromium and chromium-driver.
chromium_up() { command -v chromium >/dev/null && command -v chromedriver >/dev/null && fc-list :lang=zh 2>/dev/null | grep -q .; }
if ! chromium_up; then
  if [ "$install" = "true" -o "$install" = "1" ]; then
    echo "services: installing chromium and chromium-driver" >&2
    apt_install chromium chromium-driver fonts-wqy-microhei  # a CJK font, or the screenshots show boxes
  else
    echo "services: chromium/chromium-driver missing: the console browser tests will be skipped (JJ_INSTALL_SERVICES=1 installs them)" >&2
  fi
fi

if pg_up; then echo "export JJ_TEST_POSTGRES_URL='$PG_URL'"; else echo "services: PostgreSQL not reachable at $PG_URL" >&2; fi
if redis_up; then echo "export JJ_TEST_REDIS_URL='$REDIS_URL'"; else echo "services: Redis not reachable at $REDIS_URL" >&2; fi
