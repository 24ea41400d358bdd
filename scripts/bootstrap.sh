#!/usr/bin/env bash
# Set up this checkout on a fresh machine: Debian packages (when root), then .venv/ with the
# project and its dependencies. Safe to run again: it installs only what is missing or stale.
#
#   scripts/bootstrap.sh demo   what 'make demo' needs (the sandbox, the CPU TensorFlow)
#   scripts/bootstrap.sh test   plus what the tests use (Fashion-MNIST, Chromium, PostgreSQL,
#                               dev tools)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-demo}
case "$profile" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

apt_packages=(bubblewrap)
if [ "$profile" = test ]; then
  apt_packages+=(dataset-fashion-mnist chromium postgresql)
fi

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "bootstrap: installing Debian packages with sudo: ${missing[*]}"
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: these Debian packages are missing and I am not root: ${missing[*]}" >&2
    echo "bootstrap: install them with:  sudo apt-get install ${missing[*]}" >&2
    echo "bootstrap: without bubblewrap, grading refuses untrusted notebooks (or pass --unsafe-no-sandbox);" >&2
    echo "bootstrap: tests that need a missing package are skipped and say why." >&2
  fi
fi

python=""
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$candidate; break
  fi
done
if [ -z "$python" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q python3 python3-venv >/dev/null; python=python3
  else
    echo "bootstrap: Python 3.11 or newer is needed; install it (e.g. sudo apt-get install python3 python3-venv)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($python --version)"
  "$python" -m venv .venv || {
    echo "bootstrap: '$python -m venv' failed; install the venv module (sudo apt-get install python3-venv)" >&2
    exit 1
  }
fi

extras="cpu,kaggle,dask,postgres"
[ "$profile" = test ] && extras="$extras,dev"
stamp=".venv/.installed-$profile"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing the project and its dependencies into .venv ($extras; TensorFlow is ~2 GB, a few minutes the first time)"
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]" >.venv/pip.log 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" .venv/pip.log | tail -40 >&2
    echo "bootstrap: pip install failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
