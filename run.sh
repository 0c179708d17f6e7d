#!/usr/bin/env bash
# Hotline 1551 — one entry point. On a fresh Debian 12 machine, as root:
#   ./run.sh demo    the whole hotline with simulated calls (Ctrl-C stops it)
#   ./run.sh test    the whole test suite against real Asterisk, PostgreSQL, Redis
# Other arguments go to the `hotline` command (./run.sh migrate, ./run.sh run --role agi, …)
# or: ./run.sh lint (ruff + mypy).
set -euo pipefail
cd "$(dirname "$0")"

apt_missing=()
command -v python3 >/dev/null || apt_missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_missing+=(python3-venv)
command -v debootstrap >/dev/null || apt_missing+=(debootstrap)
command -v chromium >/dev/null || apt_missing+=(chromium)
command -v espeak-ng >/dev/null || apt_missing+=(espeak-ng)
command -v sox >/dev/null || apt_missing+=(sox)
command -v baresip >/dev/null || apt_missing+=(baresip-core)  # the SIP tests' real user agent
if ((${#apt_missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "run.sh: missing ${apt_missing[*]}; run as root once (or apt-get install them)" >&2
    exit 2
  fi
  echo "run.sh: installing ${apt_missing[*]} …" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${apt_missing[@]}" >/dev/null
fi

python3 - <<'PY' || { echo "run.sh: Python 3.11 or newer is required" >&2; exit 2; }
import sys; sys.exit(sys.version_info < (3, 11))
PY

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,fast]'
  touch .venv/.installed
fi

cmd="${1:-demo}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo) exec .venv/bin/hotline demo "$@" ;;
  test) exec .venv/bin/python -m pytest -q "$@" ;;
  lint) .venv/bin/ruff check . && .venv/bin/python -m hotline.devtools.import_rules \
          && exec .venv/bin/mypy . ;;
  *) exec .venv/bin/hotline "$cmd" "$@" ;;
esac
