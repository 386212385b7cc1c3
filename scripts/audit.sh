#!/usr/bin/env bash
# Known vulnerabilities in the locked dependencies: pip-audit against requirements.lock with PyPI's
# vulnerability data (the only service these machines and CI reach). Fails on any finding that
# audit-ignore.txt does not list with a reason. pip-audit lives in its own venv under .cache/, never
# in .venv or the lock.
#
# When PyPI's vulnerability data cannot be had (PyPI unreachable, or an index that serves no
# per-version JSON, where every package comes back "not found"), it says so loudly and fails only if
# JJ_AUDIT_REQUIRED=true. Not by default, even on CI: the package mirror CI reaches here serves no
# vulnerability data at all, and a CI that always fails checks nothing. Findings always fail.
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_AUDIT_VERSION=2.10.1
VENV=.cache/audit
IGNORE_FILE=audit-ignore.txt
PYPI=https://pypi.org  # what pip-audit asks; not configurable there either
REQUIRED=${JJ_AUDIT_REQUIRED:-false}

unavailable() {
  echo "audit: NOT RUN: PyPI's vulnerability data is unavailable: $1" >&2
  if [ "$REQUIRED" = "true" ]; then
    echo "audit: the audit is required here (JJ_AUDIT_REQUIRED=true): failing" >&2
    exit 1
  fi
  echo "audit: SKIPPED: NO DEPENDENCY AUDIT IN THIS RUN (JJ_AUDIT_REQUIRED=true makes this fatal)" >&2
  exit 0
}

find_python() {  # pip-audit needs Python >= 3.10
  local root py
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for py in python3 python3.13 python3.12 python3.11 python3.10 "$root"/versions/3.1[0-9].*/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys, venv; assert sys.version_info >= (3, 10)' 2>/dev/null; then
      command -v "$py"; return
    fi
  done
}

PY=$(find_python)
[ -n "$PY" ] || { echo "audit: no Python >= 3.10 found to run pip-audit" >&2; exit 1; }

# pip-audit asks PyPI for each pinned version's JSON (/pypi/<name>/<version>/json): check that it answers.
probe=$("$PY" - "$PYPI" <<'EOF' || true
import sys, urllib.error, urllib.request
url = f"{sys.argv[1]}/pypi/pip/24.0/json"
try:
    urllib.request.urlopen(url, timeout=15).read(1)
except urllib.error.HTTPError as exc:
    print(f"{url} answered HTTP {exc.code}")
except Exception as exc:
    print(f"{url} unreachable: {exc}")
EOF
)
[ -z "$probe" ] || unavailable "$probe"

if [ "$("$VENV/bin/pip-audit" --version 2>/dev/null || true)" != "pip-audit $PIP_AUDIT_VERSION" ]; then
  echo "audit: installing pip-audit $PIP_AUDIT_VERSION into $VENV" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check "pip-audit==$PIP_AUDIT_VERSION" >"$VENV.log" 2>&1; then
    tail -20 "$VENV.log" >&2
    unavailable "installing pip-audit from PyPI failed"
  fi
fi

report=$(mktemp)
errors=$(mktemp)
trap 'rm -f "$report" "$errors"' EXIT
# Exit status 1 means findings or a failure; the JSON report tells which.
"$VENV/bin/pip-audit" -r requirements.lock --no-deps --disable-pip --vulnerability-service pypi \
  --cache-dir .cache/audit-cache --progress-spinner off --format json --output "$report" 2>"$errors" || true

status=0
"$VENV/bin/python" - "$report" "$errors" "$IGNORE_FILE" <<'EOF' || status=$?
import json, sys

report_path, errors_path, ignore_path = sys.argv[1:4]
try:
    report = json.load(open(report_path))
except ValueError:
    sys.stderr.write(open(errors_path).read()[-3000:])
    sys.exit(3)  # no report: the service failed, not the audit

ignored = {}  # id -> reason; one per line: "<id> <reason>"; lines starting with "#" are comments
for number, line in enumerate(open(ignore_path, encoding="utf-8"), start=1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    vuln_id, _, reason = line.partition(" ")
    if not reason.strip():
        sys.exit(f"audit: {ignore_path}:{number}: {vuln_id} has no reason")
    ignored[vuln_id] = reason.strip()

deps = report.get("dependencies", [])
unaudited = [f"{d['name']}=={d.get('version', '?')}" for d in deps if d.get("skip_reason")]
found, used = [], set()
for dep in deps:
    for vuln in dep.get("vulns", []):
        ids = [vuln["id"], *vuln.get("aliases", [])]
        match = next((i for i in ids if i in ignored), None)
        if match:
            used.add(match)
            print(f"audit: ignored {dep['name']} {dep['version']} {vuln['id']}: {ignored[match]}")
        else:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none"
            found.append(f"  {dep['name']} {dep['version']} {vuln['id']} ({', '.join(vuln.get('aliases', []))}) "
                         f"fixed in: {fixes}")
for vuln_id in sorted(set(ignored) - used):
    print(f"audit: {ignore_path} lists {vuln_id}, not found any more: remove it")
if found:
    print(f"audit: {len(found)} known vulnerabilities not in {ignore_path}:\n" + "\n".join(found))
    print(f"audit: fix them (bump the pin) or add '<id> <reason>' to {ignore_path}")
    sys.exit(1)
if unaudited:
    print(f"audit: {len(unaudited)} of {len(deps)} locked packages could not be audited (no vulnerability "
          f"data from PyPI): {' '.join(unaudited[:12])}{' ...' if len(unaudited) > 12 else ''}", file=sys.stderr)
    sys.exit(3)
print(f"audit: {len(deps)} locked packages, no known vulnerability outside {ignore_path}")
EOF
if [ "$status" = 3 ]; then
  unavailable "pip-audit got no vulnerability data for the locked packages"
fi
exit "$status"
