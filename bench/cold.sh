#!/usr/bin/env bash
# The cold-miss benchmark (issue 17, part 3): distinct objects the mirror does
# not hold, fetched through `regmirror serve` from a static upstream (nginx
# serving a generated Hydrilla repository), so every request is a fill: an
# upstream fetch, a hash check and a store write. Reports requests per second
# with the data directory on disk and on tmpfs.
#
#   bench/cold.sh                      standalone
#   ONLY=cold bench/run.sh             as part of the suite (same environment)
#
# Environment (defaults in brackets):
#   COLD_OBJECTS [1000]    distinct Hydrilla files (/file/sha256/<hex>) fetched
#   COLD_CONC [16]         requests at once
#   COLD_ROUNDS [3]        runs of each binary on each data directory (a fresh
#                          data directory each run; the median is reported)
#   BASE_BIN               a second regmirror binary (main's, say) measured in the
#                          same run, interleaved, printed as "before"
#   OUT [bench/out]        where the results go (OUT/values/cold-misses.json, OUT/logs)
#   SHM [/dev/shm]         the tmpfs for the data directory on memory
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/static.sh
OUT=${OUT:-$ROOT/bench/out}
COLD_OBJECTS=${COLD_OBJECTS:-1000}
COLD_CONC=${COLD_CONC:-16}
COLD_ROUNDS=${COLD_ROUNDS:-3}
BASE_BIN=${BASE_BIN:-}
WORK=$OUT/cold-run
SHMDIR=${SHM:-/dev/shm}/regmirror-cold.$$
LOGS=$OUT/logs
mkdir -p "$OUT/bin" "$OUT/values" "$LOGS"
rm -rf "$WORK" && mkdir -p "$WORK" "$SHMDIR"
NGPID= RMPID=
cleanup() {
	[[ -n $RMPID ]] && kill "$RMPID" 2>/dev/null && wait "$RMPID" 2>/dev/null
	[[ -n $NGPID ]] && kill "$NGPID" 2>/dev/null && wait "$NGPID" 2>/dev/null
	rm -rf "$SHMDIR" "$WORK"/data-*
}
trap cleanup EXIT
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { log "nginx is needed (apt-get install nginx-light)"; exit 1; }

log "building regmirror, bench/tool and bench/syncfloor"
go build -o "$OUT/bin/regmirror" ./cmd/regmirror
go build -o "$OUT/bin/tool" ./bench/tool
go build -o "$OUT/bin/syncfloor" ./bench/syncfloor
TOOL=$OUT/bin/tool

# 1,000 mappings make 5,212 files of 0.1–2 KiB: small objects, where the
# mirror's own work per object (not the bytes) is the cost.
REPO=$OUT/cold-repo-1000
if [[ ! -f $REPO/list_all ]]; then
	log "writing a repository of 1000 mappings to ${REPO#"$ROOT"/}"
	rm -rf "$REPO.tmp" && "$OUT/bin/syncfloor" dump -mappings 1000 -dir "$REPO.tmp" >/dev/null && mv "$REPO.tmp" "$REPO"
fi
LIST=$WORK/files.txt
find "$REPO/file/sha256" -type f -printf '%f\n' | sort | sed -n "1,${COLD_OBJECTS}p" >"$LIST"
(($(wc -l <"$LIST") == COLD_OBJECTS)) || { log "the repository holds fewer than $COLD_OBJECTS files"; exit 1; }

mapfile -t P < <("$TOOL" ports 2)
PORT=${P[0]} RMPORT=${P[1]}
start_static "$WORK" "$REPO" "$PORT" "$LOGS/cold-nginx.log"
NGPID=$STATIC_PID
BASE=http://127.0.0.1:$PORT
"$TOOL" wait -url "$BASE/list_all" -timeout 10s
# Warm the page cache with the files fetched (the upstream side reads them).
(cd "$REPO/file/sha256" && xargs cat <"$LIST" >/dev/null)

# run_cold NAME BIN DATA: a serve on a fresh DATA, every listed file fetched
# once through it; prints requests per second and the CPU seconds the serve
# process used (steadier than req/s on a machine shared with other work).
run_cold() {
	local name=$1 bin=$2 data=$3 rps
	rm -rf "$data"
	"$bin" serve --listen "127.0.0.1:$RMPORT" --data "$data" --hydrilla-upstream "$BASE" \
		--refpack-upstream "$BASE" --log-level warn >"$LOGS/cold-$name.log" 2>&1 &
	RMPID=$!
	"$TOOL" wait -url "http://127.0.0.1:$RMPORT/readyz" -timeout 60s
	sync # start with nothing dirty
	local cpu0 cpu1
	cpu0=$(awk '{print $14 + $15}' "/proc/$RMPID/stat")
	"$TOOL" fetch -base "http://127.0.0.1:$RMPORT" -list "$LIST" -prefix /file/sha256/ -c "$COLD_CONC" -rounds 1 \
		-out "$WORK/$name.json" >/dev/null
	cpu1=$(awk '{print $14 + $15}' "/proc/$RMPID/stat")
	kill "$RMPID" && wait "$RMPID" || true
	RMPID=
	python3 - "$WORK/$name.json" "$COLD_OBJECTS" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
if r["bad"] or r["rounds"][0].get("200 MISS", 0) != n:
    sys.exit(f"not {n} stored misses: {r['rounds'][0]} {r.get('failures')}")
print(f"{n / r['seconds'][0]:.0f} {int(sys.argv[3]) / int(sys.argv[4]):.2f}")
EOF
}

declare -a ROWS=()
for r in $(seq "$COLD_ROUNDS"); do
	for where in disk tmpfs; do
		for label in ${BASE_BIN:+before} after; do
			bin=$OUT/bin/regmirror
			[[ $label == before ]] && bin=$BASE_BIN
			# Each run keeps its data directory until the end (see bench/sync.sh:
			# on ext4, files deleted a moment ago make new ones slower).
			if [[ $where == disk ]]; then d=$WORK/data-$label-$r; else d=$SHMDIR/data-$label-$r; fi
			res=$(run_cold "$label-$where-$r" "$bin" "$d") || { log "$label on $where failed: see $LOGS/cold-$label-$where-$r.log"; exit 1; }
			read -r rps cpu <<<"$res"
			log "round $r/$COLD_ROUNDS, $label, data directory on $where: $rps req/s, serve used $cpu CPU s"
			ROWS+=("$label $where $rps $cpu")
		done
	done
done

python3 - "$COLD_OBJECTS" "$COLD_CONC" "$OUT/values/cold-misses.json" "${ROWS[@]}" <<'EOF'
import json, statistics, sys
n, conc, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
runs = {}
for row in sys.argv[4:]:
    label, where, rps, cpu = row.split()
    runs.setdefault((label, where), []).append((float(rps), float(cpu)))
print(f"\n{n} distinct cold Hydrilla files through regmirror serve, {conc} at once, nginx static upstream")
print("| binary | data directory | req/s (median) | runs | serve CPU s (median) |")
print("|---|---|---|---|---|")
res = {"name": "Cold misses through serve", "objects": n, "concurrency": conc, "runs": []}
for (label, where), v in runs.items():
    rps, cpu = [x for x, _ in v], [y for _, y in v]
    med = statistics.median(rps)
    print(f"| {label} | {where} | {med:.0f} | {' '.join(f'{x:.0f}' for x in rps)} | {statistics.median(cpu):.2f} |")
    res["runs"].append({"binary": label, "data": where, "median_rps": med, "rps": rps, "cpu_seconds": cpu})
json.dump(res, open(out, "w"))
EOF
