#!/usr/bin/env bash
# Run the test suite again on another supported Python (3.12, 3.13) when one is installed:
#   bash .ci/pyversion.sh 3.13
# The venv is .venv<major><minor> (e.g. .venv313), built from the pinned constraints.txt.
set -euo pipefail
ver="${1:?usage: .ci/pyversion.sh 3.12|3.13}"
tag="${ver/./}"
venv=".venv$tag"
py=""
for cand in "python$ver" "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/$ver"*/bin/python"$ver")"; do
  for c in $cand; do
    if [ -n "$c" ] && "$c" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$ver'.split('.')))" >/dev/null 2>&1; then
      py="$c"; break 2
    fi
  done
done
if [ -z "$py" ]; then
  echo "test$tag: no python$ver on this machine; skipped"
  exit 0
fi
echo "test$tag: running the suite on $("$py" --version) ($py)"
if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ] || [ constraints.txt -nt "$venv/.installed" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -c constraints.txt -e '.[dev,fastapi,aiohttp,otel]'
  touch "$venv/.installed"
fi
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2
