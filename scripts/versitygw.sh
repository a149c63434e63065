#!/usr/bin/env bash
# versitygw: the real S3 server the S3 store's tests run against (issue 10).
#
#   scripts/versitygw.sh install           build v1.8.0 into $(go env GOPATH)/bin once
#   scripts/versitygw.sh path              print the binary's path (installing it if needed)
#   scripts/versitygw.sh start DIR [PORT [BUCKET]]
#                                          run it in the foreground on 127.0.0.1:PORT
#                                          (default 7070), posix backend on DIR; with
#                                          BUCKET, that bucket exists (a folder in DIR)
#
# The version is pinned: earlier versitygw releases do not make conditional
# writes (If-None-Match / If-Match) atomic, and the lease relies on them.
# start takes the keys from VERSITYGW_ACCESS / VERSITYGW_SECRET (defaults:
# regmirror / regmirror-secret). Tests start their own instance; start is for
# running a mirror against a local bucket by hand.
set -euo pipefail

VERSION=v1.8.0
MODULE=github.com/versity/versitygw/cmd/versitygw
GOBIN_DIR="$(go env GOPATH | cut -d: -f1)/bin"
BIN="$GOBIN_DIR/versitygw"

installed_version() {
	[ -x "$BIN" ] || return 1
	go version -m "$BIN" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

install() {
	if [ "$(installed_version || true)" = "$VERSION" ]; then
		return 0
	fi
	echo "versitygw.sh: installing $MODULE@$VERSION into $GOBIN_DIR" >&2
	local t0=$SECONDS
	mkdir -p "$GOBIN_DIR"
	GOBIN="$GOBIN_DIR" go install "$MODULE@$VERSION"
	echo "versitygw.sh: installed in $((SECONDS - t0))s" >&2
}

case "${1:-}" in
install)
	install
	;;
path)
	install
	echo "$BIN"
	;;
start)
	dir="${2:?usage: versitygw.sh start DIR [PORT [BUCKET]]}"
	port="${3:-7070}"
	install
	mkdir -p "$dir"
	if [ -n "${4:-}" ]; then mkdir -p "$dir/$4"; fi
	exec "$BIN" --access "${VERSITYGW_ACCESS:-regmirror}" --secret "${VERSITYGW_SECRET:-regmirror-secret}" \
		--port "127.0.0.1:$port" posix "$dir"
	;;
*)
	echo "usage: $0 install | path | start DIR [PORT [BUCKET]]" >&2
	exit 2
	;;
esac
