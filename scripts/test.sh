#!/usr/bin/env bash
# The test command of the README: every test, with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -race -timeout 20m ./... "$@"
