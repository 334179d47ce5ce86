#!/usr/bin/env bash
# Installs what `make bench-peers` compares against, once: Debian's etcd server and client, and
# PySyncObj from PyPI into the given virtualenv. Safe to run again: each step is skipped when done.
#
#   benches/peers/setup.sh [VENV_PYTHON]     (default: .venv/bin/python)
set -euo pipefail

venv_python="${1:-.venv/bin/python}"

if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ]; then
    # apt-get needs root; the benchmark machine runs as root, elsewhere sudo is the caller's choice.
    apt_get="apt-get"
    if [ "$(id -u)" -ne 0 ]; then
        apt_get="sudo apt-get"
    fi
    if ! apt-cache show etcd-server >/dev/null 2>&1; then
        $apt_get update -q
    fi
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -q etcd-server etcd-client
fi

# etcd's Debian package starts a system service on install; a running one would hold port 2379 and
# share the cores with the benchmark, so it is stopped (the benchmark runs its own members).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
fi

if ! "$venv_python" -c "import pysyncobj" >/dev/null 2>&1; then
    "$venv_python" -m pip install --quiet pysyncobj
fi

echo "setup: $(/usr/bin/etcd --version 2>/dev/null | head -n 1); pysyncobj $("$venv_python" -c 'import importlib.metadata as m; print(m.version("pysyncobj"))')"
