#!/usr/bin/env bash
# The whole test suite, on a fresh clone: environment, model, services, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Known vulnerabilities in the lock (PyPI's data, when this machine can reach it: scripts/audit.sh).
bash scripts/audit.sh
.venv/bin/python scripts/train.py >/dev/null
eval "$(bash scripts/services.sh)"
if [ "${CI:-false}" = "true" ]; then
  # On CI the PostgreSQL and Redis suites must run, never skip.
  : "${JJ_TEST_POSTGRES_URL:?PostgreSQL is required on CI and could not be started}"
  : "${JJ_TEST_REDIS_URL:?Redis is required on CI and could not be started}"
  export JJ_REQUIRE_SERVICES=1
fi
[ -n "${JJ_TEST_POSTGRES_URL:-}" ] || echo "SKIPPING the PostgreSQL runs: no server (set JJ_TEST_POSTGRES_URL or JJ_INSTALL_SERVICES=1)"
[ -n "${JJ_TEST_REDIS_URL:-}" ] || echo "SKIPPING the Redis tests: no server (set JJ_TEST_REDIS_URL or JJ_INSTALL_SERVICES=1)"
exec .venv/bin/python -m pytest "$@"
