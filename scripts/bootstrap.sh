#!/usr/bin/env bash
# Make .venv match requirements.lock: Python 3.10, every dependency at its locked version.
# Does nothing when the lock has not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local root candidates
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  candidates=$(ls -d "$root"/versions/3.10.*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10 2>/dev/null || true)
  for py in $candidates; do
    if "$py" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then echo "$py"; return; fi
  done
}

PY=$(find_python)
if [ -z "$PY" ]; then
  echo "bootstrap: Python 3.10 not found (Rasa 3.6 needs 3.8-3.10); install it with pyenv: pyenv install 3.10" >&2
  exit 1
fi

UV=.cache/uv/bin/uv
if [ ! -x "$UV" ]; then
  echo "bootstrap: installing uv" >&2
  "$PY" -m venv .cache/uv
  .cache/uv/bin/pip install -q --disable-pip-version-check "uv==0.13.9"
fi
if [ ! -x .venv/bin/python ]; then
  "$UV" venv -q --python "$PY" .venv
fi
want=$(cat requirements.lock | sha256sum | cut -c1-16)
if [ "$(cat .venv/.lock-sha 2>/dev/null || true)" != "$want" ]; then
  echo "bootstrap: installing the locked dependencies into .venv" >&2
  VIRTUAL_ENV=.venv "$UV" pip sync -q requirements.lock
  echo "$want" > .venv/.lock-sha
fi
