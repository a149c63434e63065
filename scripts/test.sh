#!/usr/bin/env bash
# The test command of the README: every test, with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
# -count=1: the e2e tests build the binary themselves, so a cached result could
# hide a change in the code they run.
exec go test -race -count=1 -timeout 20m ./... "$@"
