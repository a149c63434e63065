#!/usr/bin/env bash
# The large-repository memory benchmark (issue 17, part 4): a first
# `regmirror sync` of a generated Hydrilla repository (served as static files
# by nginx) into a data directory on tmpfs, then `regmirror serve` on that
# data directory: how much memory each holds, how soon serve answers, and how
# fast it answers /query.
#
#   bench/bigmem.sh                    standalone
#   ONLY=bigmem bench/run.sh           as part of the suite (same environment)
#
# Environment (defaults in brackets):
#   SYNC_MAPPINGS [100000] mappings of the generated repository (bench/upstream's
#                          generator: 100,000 mappings are 365,707 items and
#                          515,477 files; writing it takes minutes, and it is
#                          kept in OUT for later runs)
#   SYNC_JOBS [4]          sync --jobs
#   BASE_BIN               a second regmirror binary (main's, say) measured in the
#                          same run, printed as "before"
#   ROUNDS [3] DURATION [10s] CONNS [64] THREADS [2]   the wrk runs of /query,
#                          alternating between the binaries
#   OUT [bench/out]        where the results go (OUT/values/bigmem.json, OUT/logs)
#   SHM [/dev/shm]         the tmpfs for the data directories
#
# What is measured, for each binary:
#   sync       wall time and peak RSS of the sync (/usr/bin/time -v)
#   ready      from starting `serve` to /readyz answering 200: it listens, and
#              answers hits and /query from the pattern index (checked right
#              then); the size accounting of the store goes on in the background
#   settled    RSS once serve's CPU use has settled after ready (the start-up
#              accounting done), split into anonymous memory (the heap) and
#              mapped files (the bbolt index, RssFile + RssShmem; on tmpfs it
#              is shmem) from /proc/PID/status
#   /query     wrk with bench/query.lua over 5,000 URLs that match mappings,
#              and RSS after it
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/static.sh
OUT=${OUT:-$ROOT/bench/out}
SYNC_MAPPINGS=${SYNC_MAPPINGS:-100000}
SYNC_JOBS=${SYNC_JOBS:-4}
BASE_BIN=${BASE_BIN:-}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WORK=$OUT/bigmem-run
SHMDIR=${SHM:-/dev/shm}/regmirror-bigmem.$$
LOGS=$OUT/logs
mkdir -p "$OUT/bin" "$OUT/values" "$LOGS"
rm -rf "$WORK" && mkdir -p "$WORK" "$SHMDIR"
declare -a PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$SHMDIR"
}
trap cleanup EXIT
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { log "nginx is needed (apt-get install nginx-light)"; exit 1; }
[[ -x /usr/bin/time ]] || { log "/usr/bin/time is needed (apt-get install time)"; exit 1; }
WRK=$(command -v wrk) || { log "wrk is needed (apt-get install wrk)"; exit 1; }

log "building regmirror, bench/syncfloor and bench/tool"
go build -o "$OUT/bin/regmirror" ./cmd/regmirror
go build -o "$OUT/bin/syncfloor" ./bench/syncfloor
go build -o "$OUT/bin/tool" ./bench/tool
TOOL=$OUT/bin/tool

# The same repository as bench/sync.sh's, kept in OUT.
REPO=$OUT/sync-repo-$SYNC_MAPPINGS
if [[ ! -f $REPO/list_all ]]; then
	log "writing a repository of $SYNC_MAPPINGS mappings to ${REPO#"$ROOT"/}"
	rm -rf "$REPO.tmp" && "$OUT/bin/syncfloor" dump -mappings "$SYNC_MAPPINGS" -dir "$REPO.tmp" >/dev/null && mv "$REPO.tmp" "$REPO"
fi
QUERIES=$OUT/queries-$SYNC_MAPPINGS.txt
if [[ ! -s $QUERIES ]]; then
	log "listing /query URLs of that repository"
	"$OUT/bin/syncfloor" queries -mappings "$SYNC_MAPPINGS" -n 5000 >"$QUERIES.tmp" && mv "$QUERIES.tmp" "$QUERIES"
fi

mapfile -t P < <("$TOOL" ports 3)
PORT=${P[0]}
start_static "$WORK" "$REPO" "$PORT" "$LOGS/bigmem-nginx.log"
PIDS+=($STATIC_PID)
BASE=http://127.0.0.1:$PORT
for _ in $(seq 50); do curl -sf -o /dev/null "$BASE/list_all" && break; sleep 0.1; done
log "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -a LABELS=() BINS=()
[[ -n $BASE_BIN ]] && LABELS+=(before) BINS+=("$BASE_BIN")
LABELS+=(after) BINS+=("$OUT/bin/regmirror")

# sync_one LABEL BIN: a first sync into $SHMDIR/data-LABEL.
sync_one() {
	local label=$1 bin=$2 d=$SHMDIR/data-$1
	log "sync ($label, $SYNC_MAPPINGS mappings, data directory on tmpfs)"
	/usr/bin/time -v -o "$WORK/sync-$label.time" "$bin" sync --data "$d" --hydrilla-upstream "$BASE" \
		--jobs "$SYNC_JOBS" --log-level warn >"$LOGS/bigmem-sync-$label.log" 2>&1 || { log "$label failed: see $LOGS/bigmem-sync-$label.log"; exit 1; }
	local secs rss
	secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/sync-$label.time")
	rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/sync-$label.time")
	log "  ${secs}s, peak RSS $((rss / 1024)) MiB, index.db $(($(stat -c %s "$d/index.db") >> 20)) MiB"
	printf '{"seconds":%s,"peak_rss_kib":%s,"index_bytes":%s}\n' "$secs" "$rss" "$(stat -c %s "$d/index.db")" >"$WORK/sync-$label.json"
}

# serve_one LABEL BIN PORT: starts serve on the label's data directory and
# measures its start-up; leaves it running (SERVE_PID).
serve_one() {
	local label=$1 bin=$2 port=$3 url=http://127.0.0.1:$3 t0 t1 first hdr
	log "serve ($label)"
	t0=$(date +%s%N)
	"$bin" serve --listen "127.0.0.1:$port" --data "$SHMDIR/data-$label" --hydrilla-upstream "$BASE" \
		--metadata-max-age 8760h --log-level warn >"$LOGS/bigmem-serve-$label.log" 2>&1 &
	SERVE_PID=$!
	PIDS+=("$SERVE_PID")
	"$TOOL" wait -url "$url/readyz" -timeout 300s -every 2ms
	t1=$(date +%s%N)
	# Ready means answering /query from the pattern index, not just /readyz.
	first=$(head -1 "$QUERIES")
	hdr=$(curl -s -D - -o "$WORK/query-$label.json" "$url$first" | tr -d '\r')
	if ! grep -qi '^x-cache: HIT' <<<"$hdr" || ! grep -q '"identifier"' "$WORK/query-$label.json"; then
		log "$label does not answer /query from its index once ready:"
		echo "$hdr" >&2
		exit 1
	fi
	"$TOOL" mem -pid "$SERVE_PID" -out "$WORK/ready-$label.json" >/dev/null
	# Settled: the start-up work done (CPU idle).
	"$TOOL" idle -pid "$SERVE_PID" -timeout 600s -out "$WORK/idle-$label.json" >/dev/null
	"$TOOL" mem -pid "$SERVE_PID" -out "$WORK/settled-$label.json" >/dev/null
	printf '{"ready_ms":%s}\n' "$(((t1 - t0) / 1000000))" >"$WORK/start-$label.json"
	log "  ready in $(((t1 - t0) / 1000000)) ms; settled: $(cat "$WORK/settled-$label.json")"
}

for i in "${!LABELS[@]}"; do
	sync_one "${LABELS[i]}" "${BINS[i]}"
done
declare -A SPID=() SPORT=()
for i in "${!LABELS[@]}"; do
	serve_one "${LABELS[i]}" "${BINS[i]}" "${P[i + 1]}"
	SPID[${LABELS[i]}]=$SERVE_PID SPORT[${LABELS[i]}]=${P[i + 1]}
done
for r in $(seq "$ROUNDS"); do
	for label in "${LABELS[@]}"; do
		log "  round $r/$ROUNDS: /query on $label"
		"$WRK" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/bench/query.lua" \
			"http://127.0.0.1:${SPORT[$label]}" -- "$QUERIES" >"$WORK/wrk-$label.r$r.txt" 2>&1 || true
		sleep 1
	done
done
for label in "${LABELS[@]}"; do
	"$TOOL" mem -pid "${SPID[$label]}" -out "$WORK/afterwrk-$label.json" >/dev/null
done

python3 - "$WORK" "$SYNC_MAPPINGS" "$OUT/values/bigmem.json" "$(cut -d' ' -f1-3 /proc/loadavg)" "${LABELS[@]}" <<'EOF'
import json, re, statistics, sys
work, mappings, out, load, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
def j(name): return json.load(open(f"{work}/{name}.json"))
def mib(kib): return kib / 1024
res = {"name": "large repository in bounded memory", "mappings": int(mappings), "load_at_end": load, "runs": []}
print(f"\nHydrilla repository of {mappings} mappings, data directory on tmpfs (load at end: {load})\n")
print("| binary | sync s | sync peak RSS MiB | index.db MiB | serve ready ms | settled RSS MiB (anon + mapped) | /query req/s | RSS after wrk MiB |")
print("|---|---|---|---|---|---|---|---|")
for label in labels:
    s, st, se, aw = j(f"sync-{label}"), j(f"start-{label}"), j(f"settled-{label}"), j(f"afterwrk-{label}")
    rps = []
    for r in range(1, 100):
        try:
            m = re.search(r"Requests/sec:\s+([0-9.]+)", open(f"{work}/wrk-{label}.r{r}.txt").read())
        except FileNotFoundError:
            break
        if m:
            rps.append(float(m.group(1)))
    mapped = se.get("rssfile_kib", 0) + se.get("rssshmem_kib", 0)
    med = statistics.median(rps) if rps else 0
    print(f"| {label} | {s['seconds']:.0f} | {mib(s['peak_rss_kib']):.0f} | {s['index_bytes']/2**20:.0f} | {st['ready_ms']} | "
          f"{mib(se['vmrss_kib']):.0f} ({mib(se['rssanon_kib']):.0f} + {mib(mapped):.0f}) | {med:.0f} ({', '.join(f'{x:.0f}' for x in rps)}) | {mib(aw['vmrss_kib']):.0f} |")
    res["runs"].append({"binary": label, "sync": s, "start": st, "settled": se, "after_wrk": aw, "query_rps": rps})
json.dump(res, open(out, "w"))
EOF
