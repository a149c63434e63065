#!/usr/bin/env bash
# Checks packaging/regmirror.service with `systemd-analyze verify` (Debian's
# package "systemd" provides it) and fails on any complaint, warnings included.
# verify also checks that ExecStart's program exists, and the unit names the
# installed /usr/bin/regmirror, so a copy naming a freshly built binary is
# verified instead; nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing: apt-get install -y systemd" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/regmirror" ./cmd/regmirror
sed "s#/usr/bin/regmirror#$tmp/regmirror#g" packaging/regmirror.service >"$tmp/regmirror.service"
if ! out=$(systemd-analyze verify "$tmp/regmirror.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd-analyze verify packaging/regmirror.service:" >&2
  echo "${out//$tmp/<tmp>}" >&2
  exit 1
fi
echo "systemd-analyze verify packaging/regmirror.service: clean"
