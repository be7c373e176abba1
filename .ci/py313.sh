#!/usr/bin/env bash
# Run the test suite again on Python 3.13 when one is installed (supported: 3.11-3.13).
set -euo pipefail
py=""
for cand in python3.13 "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.13"*/bin/python3.13)"; do
  for c in $cand; do
    if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
      py="$c"; break 2
    fi
  done
done
if [ -z "$py" ]; then
  echo "test313: no python3.13 on this machine; the suite ran on $(python3 --version 2>&1) only"
  exit 0
fi
echo "test313: running the suite on $("$py" --version) ($py)"
if [ ! -f .venv313/.installed ] || [ pyproject.toml -nt .venv313/.installed ] || [ constraints.txt -nt .venv313/.installed ]; then
  "$py" -m venv .venv313
  .venv313/bin/python -m pip install --quiet --upgrade pip
  .venv313/bin/python -m pip install --quiet -c constraints.txt -e '.[dev,fastapi,aiohttp,otel]'
  touch .venv313/.installed
fi
.venv313/bin/python -m pytest -q -p no:cacheprovider -n 2
