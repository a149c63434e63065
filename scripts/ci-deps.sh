#!/usr/bin/env bash
# Installs what the tests need on a fresh machine (CI). Each step is skipped
# when its tool is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  # A private TMPDIR: apt's temporary files have been seen deleted by other
  # processes on shared machines.
  export TMPDIR=$(mktemp -d)
  apt-get update -q
  apt-get install -y -q "${need_apt[@]}"
fi
if [ -x scripts/versitygw.sh ]; then scripts/versitygw.sh install; fi
