#!/usr/bin/env bash
# The sync benchmark (issue 17; design.md, "Sync at the speed of the network"):
# a first `regmirror sync` of a generated Hydrilla repository served as static
# files by nginx, against the floor of the same machine: the same objects
# fetched with the same concurrency and hashed, stored nowhere.
#
#   bench/sync.sh                      standalone
#   ONLY=sync bench/run.sh             as part of the suite (same environment)
#
# Environment (defaults in brackets):
#   SYNC_MAPPINGS [10000]  mappings of the generated repository (bench/upstream's
#                          generator: 10,000 mappings are 36,637 items and 51,340 files)
#   SYNC_JOBS [4]          sync --jobs, and the floor client's concurrency
#   BASE_BIN               a second regmirror binary (main's, say) measured in the
#                          same run, printed as "before"
#   OUT [bench/out]        where the results go (OUT/values/floor-sync.json, OUT/logs)
#   SHM [/dev/shm]         the tmpfs for the data directory on memory
# Prints, for each binary, the sync's time on disk and on tmpfs as a ratio to
# the floor, and its peak RSS (/usr/bin/time -v).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/static.sh
OUT=${OUT:-$ROOT/bench/out}
SYNC_MAPPINGS=${SYNC_MAPPINGS:-10000}
SYNC_JOBS=${SYNC_JOBS:-4}
BASE_BIN=${BASE_BIN:-}
WORK=$OUT/sync-run
SHMDIR=${SHM:-/dev/shm}/regmirror-sync.$$
LOGS=$OUT/logs
mkdir -p "$OUT/bin" "$OUT/values" "$LOGS"
rm -rf "$WORK" && mkdir -p "$WORK" "$SHMDIR"
NGPID=
cleanup() {
	[[ -n $NGPID ]] && kill "$NGPID" 2>/dev/null && wait "$NGPID" 2>/dev/null
	rm -rf "$SHMDIR" "$WORK"/data-*
}
trap cleanup EXIT
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { log "nginx is needed (apt-get install nginx-light)"; exit 1; }
[[ -x /usr/bin/time ]] || { log "/usr/bin/time is needed (apt-get install time)"; exit 1; }

log "building regmirror and bench/syncfloor"
go build -o "$OUT/bin/regmirror" ./cmd/regmirror
go build -o "$OUT/bin/syncfloor" ./bench/syncfloor

REPO=$OUT/sync-repo-$SYNC_MAPPINGS
if [[ ! -f $REPO/list_all ]]; then
	log "writing a repository of $SYNC_MAPPINGS mappings to ${REPO#"$ROOT"/}"
	rm -rf "$REPO.tmp" && "$OUT/bin/syncfloor" dump -mappings "$SYNC_MAPPINGS" -dir "$REPO.tmp" >/dev/null && mv "$REPO.tmp" "$REPO"
fi

PORT=$(go run ./bench/tool ports 1)
start_static "$WORK" "$REPO" "$PORT" "$LOGS/sync-nginx.log"
NGPID=$STATIC_PID
BASE=http://127.0.0.1:$PORT
for _ in $(seq 50); do curl -sf -o /dev/null "$BASE/list_all" && break; sleep 0.1; done

# Warm the page cache with the repository's files (both sides read them).
cat "$REPO"/list_all >/dev/null
find "$REPO" -type f -exec cat {} + >/dev/null

log "floor: fetch + sha256 of every object, $SYNC_JOBS at once, nothing stored"
"$OUT/bin/syncfloor" floor -base "$BASE" -jobs "$SYNC_JOBS" >"$WORK/floor.json"
"$OUT/bin/syncfloor" floor -base "$BASE" -jobs "$SYNC_JOBS" >"$WORK/floor2.json"
FLOOR=$(python3 -c 'import json,sys; print(min(json.load(open(f))["seconds"] for f in sys.argv[1:]))' "$WORK/floor.json" "$WORK/floor2.json")
log "  floor ${FLOOR}s ($(cat "$WORK/floor.json"))"

# run_sync NAME BIN DATA: one first sync into DATA; prints seconds and peak KiB.
run_sync() {
	local name=$1 bin=$2 data=$3
	rm -rf "$data"
	/usr/bin/time -v -o "$WORK/$name.time" "$bin" sync --data "$data" --hydrilla-upstream "$BASE" \
		--jobs "$SYNC_JOBS" --log-level warn >"$LOGS/sync-$name.log" 2>&1 || { log "$name failed: see $LOGS/sync-$name.log"; return 1; }
	local secs rss
	secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/$name.time")
	rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time")
	echo "$secs $rss"
}

declare -a ROWS=()
measure() { # measure LABEL BIN
	local label=$1 bin=$2 d t
	for where in disk tmpfs; do
		# Each run keeps its own data directory until the end: on ext4 without
		# a journal, creating a file skips every inode freed in the last one
		# to six minutes (fs/ext4/ialloc.c, recently_deleted), one lookup
		# each, so deleting one run's tens of thousands of files made the
		# next run pay for them, whichever binary it was.
		if [[ $where == disk ]]; then d=$WORK/data-$label; else d=$SHMDIR/data-$label; fi
		log "sync ($label, data directory on $where)"
		sync # start each run with nothing dirty
		read -r t rss < <(run_sync "$label-$where" "$bin" "$d")
		ROWS+=("$label $where $t $rss")
		log "  ${t}s, $(python3 -c "print(f'{$t/$FLOOR:.1f}')")x the floor, peak RSS $((rss / 1024)) MiB"
	done
}
[[ -n $BASE_BIN ]] && measure before "$BASE_BIN"
measure after "$OUT/bin/regmirror"

python3 - "$FLOOR" "$SYNC_MAPPINGS" "$SYNC_JOBS" "$OUT/values/floor-sync.json" "$(cat "$WORK/floor.json")" "${ROWS[@]}" <<'EOF'
import json, sys
floor, mappings, jobs, out, fl = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
rows = [r.split() for r in sys.argv[6:]]
print(f"\nHydrilla sync of {mappings} mappings ({fl['items']} items, {fl['files']} files, {fl['bytes']/2**20:.0f} MiB), --jobs {jobs}, nginx static files")
print(f"floor (fetch + sha256, nothing stored): {floor:.2f} s\n")
print("| binary | data directory | sync s | x floor | peak RSS MiB |")
print("|---|---|---|---|---|")
res = {"name": "Hydrilla sync against the floor", "mappings": int(mappings), "jobs": int(jobs), "floor_seconds": floor, "runs": []}
for label, where, t, rss in rows:
    t, rss = float(t), int(rss)
    print(f"| {label} | {where} | {t:.2f} | {t/floor:.1f} | {rss/1024:.0f} |")
    res["runs"].append({"binary": label, "data": where, "seconds": t, "ratio": t / floor, "peak_rss_kib": rss})
json.dump(res, open(out, "w"))
EOF
