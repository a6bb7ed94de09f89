#!/usr/bin/env bash
# Idempotent set-up for `make demo` and `make test`: system packages when missing, then
# .venv with the pinned dependencies. A second run only checks and returns in a second.
#   scripts/setup.sh          what grading needs (bubblewrap, prlimit, the offline data set)
#   scripts/setup.sh --test   also PostgreSQL (the gradebook test against a real server) and
#                             Debian's chromium (the pages people open are tested in a browser)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v prlimit >/dev/null || need+=(util-linux)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if [ "${1:-}" = "--test" ]; then
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  command -v chromium >/dev/null || need+=(chromium)   # the browser tests of feedback and formgrader pages
  command -v node >/dev/null || need+=(nodejs)   # a notebook saved as a browser's JavaScript writes it
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "setup: installing Debian packages: ${need[*]}"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# The stamp names the hash of pyproject.toml: editing the dependencies reinstalls them.
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3.11 -m venv .venv || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: these two come from the machine's local wheel store (a minute).
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
