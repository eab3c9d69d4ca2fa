#!/usr/bin/env bash
# Install botproxy with its test extras and run the whole suite (ruff, mypy, lint-imports, pytest), once per
# Python line we support: 3.11 (mitmproxy 11.0.x) and, where an interpreter exists, 3.12 (mitmproxy 12.x).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {  # find_python 3.12 -> a path to a working python3.12, or nothing
  local v=$1 candidate
  for candidate in "$(command -v "python$v" 2>/dev/null || true)" /root/.pyenv/versions/"$v".*/bin/"python$v" \
                   /usr/bin/"python$v" /usr/local/bin/"python$v"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "import sys" >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

versions=("${BOTPROXY_PYTHONS:-3.11 3.12}")
ran=0
for v in ${versions[@]}; do
  if ! py=$(find_python "$v"); then
    if [ "$v" = "3.11" ] && py=$(find_python 3); then :; else echo "== python$v not found, skipped"; continue; fi
  fi
  venv=".venv-$v"
  echo "== python$v ($py) in $venv"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$venv/bin/python" -m pip install -q -e ".[test]"
  "$venv/bin/python" -c "import mitmproxy.version as m, sys; print('   mitmproxy', m.VERSION, 'on', sys.version.split()[0])"
  "$venv/bin/ruff" check $(ls -d botproxy tests bench addons 2>/dev/null)
  "$venv/bin/mypy" botproxy
  "$venv/bin/lint-imports"
  "$venv/bin/python" -m pytest "$@"
  ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || { echo "no usable Python 3.11+ found"; exit 2; }
