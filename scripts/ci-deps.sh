#!/usr/bin/env bash
# Installs what the tests need on a fresh machine (CI). Each step is skipped
# when its tool is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/versitygw.sh ]; then scripts/versitygw.sh install; fi
