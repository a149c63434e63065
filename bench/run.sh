#!/usr/bin/env bash
# regmirror benchmark suite (issue 6). Read BENCHMARKS.md at the root first.
#
#   bench/run.sh             the full run (see BENCHMARKS.md for how long it takes)
#   QUICK=1 bench/run.sh     a smoke run of every measurement, well under 3 minutes
#
# Everything listens on 127.0.0.1 only; every process the script starts is
# stopped when it ends (normally, on error or on Ctrl-C). Results go to
# bench/out/ (gitignored): the raw wrk outputs, JSON of every other
# measurement, the logs, and results.md (the table also printed at the end).
#
# Environment (defaults in brackets; QUICK=1 changes the defaults):
#   ROUNDS [3]            rounds of each wrk measurement and of the stampede
#   DURATION [10s]        length of each wrk run
#   CONNS [64] THREADS [2]  wrk -c and -t
#   MAPPINGS_SMALL [10000]  MAPPINGS_BIG [100000]   Hydrilla repository sizes
#   MEM_OBJECTS [10000]   distinct objects for the memory measurement
#   MEM_OBJECT_BYTES [16384]  their size; MEM_LIMIT [64MiB] the memory tier bound
#   RP_PACKAGES [1000]    RefPack packages (x 3 versions) for the RefPack sync
#   FRESH=1               sync the Hydrilla repositories again even when a
#                         matching data directory is kept in bench/out/cache
#   ONLY="hits stampede query mem refpack sync cold"   run only these parts
#                         (sync: bench/sync.sh, the Hydrilla sync against its floor;
#                         SYNC_MAPPINGS, SYNC_JOBS, BASE_BIN as described there;
#                         cold: bench/cold.sh, distinct cold objects through serve;
#                         COLD_OBJECTS, COLD_CONC, COLD_ROUNDS, BASE_BIN as there;
#                         bigmem, never in the default set: bench/bigmem.sh, the
#                         memory of a sync and of serve at 100,000 mappings)
#   SKIP_INSTALL=1        do not install nginx and wrk (they must be on PATH)
set -Eeuo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/out}
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	: "${ROUNDS:=1}" "${DURATION:=3s}" "${MAPPINGS_SMALL:=1000}" "${MAPPINGS_BIG:=5000}"
	: "${MEM_OBJECTS:=2000}" "${RP_PACKAGES:=100}"
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
MAPPINGS_SMALL=${MAPPINGS_SMALL:-10000}
MAPPINGS_BIG=${MAPPINGS_BIG:-100000}
MEM_OBJECTS=${MEM_OBJECTS:-10000}
MEM_OBJECT_BYTES=${MEM_OBJECT_BYTES:-16384}
MEM_LIMIT=${MEM_LIMIT:-64MiB}
RP_PACKAGES=${RP_PACKAGES:-1000}
ONLY=${ONLY:-hits stampede query mem refpack sync cold}
SEED=1

BIN=$OUT/bin
LOGS=$OUT/logs
RUN=$OUT/run          # data directories and nginx state of this run (on disk)
CACHE=$OUT/cache      # Hydrilla data directories kept between runs
# Hydrilla syncs write to memory (tmpfs): see BENCHMARKS.md.
SHM=${SHM:-/dev/shm}/regmirror-bench.$$

declare -a PIDS=()
declare -A PID=()

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

# stop_pid PID: TERM, wait up to 10 s, then KILL; also the children it leaves
# (nginx workers).
stop_pid() {
	local p=$1 kids
	kill -0 "$p" 2>/dev/null || return 0
	kids=$(pgrep -P "$p" 2>/dev/null || true)
	kill -TERM "$p" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
}

stop() { # stop NAME
	local p=${PID[$1]:-}
	[[ -n $p ]] || return 0
	stop_pid "$p"
	unset "PID[$1]"
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
	rm -rf "$SHM"
	[[ $rc == 0 ]] || log "bench: failed (exit $rc); logs in $LOGS"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD…: run CMD in the background, output to $LOGS/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$LOGS/$name.log" 2>&1 &
	PIDS+=($!)
	PID[$name]=$!
}

# wait_http URL [TIMEOUT]: until URL answers 200.
wait_http() { "$BIN/tool" wait -url "$1" -timeout "${2:-60s}"; }

# --- 1. What the suite needs ----------------------------------------------
install_deps() {
	local need=()
	command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
	command -v wrk >/dev/null 2>&1 || need+=(wrk)
	((${#need[@]})) || return 0
	[[ ${SKIP_INSTALL:-0} != 1 ]] || { log "missing: ${need[*]} (SKIP_INSTALL=1)"; exit 1; }
	log "installing ${need[*]} from Debian"
	# Never let the package start a system nginx on port 80: keep services
	# from starting during the install (policy-rc.d), then restore the machine.
	local made_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local ok=0
	apt-get update -q >"$LOGS/apt.log" 2>&1 || true
	if DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "${need[@]}" >>"$LOGS/apt.log" 2>&1; then
		ok=1
	elif [[ " ${need[*]} " == *" nginx-light "* ]]; then
		need=("${need[@]/nginx-light/nginx}")
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "${need[@]}" >>"$LOGS/apt.log" 2>&1 && ok=1
	fi
	((made_policy)) && rm -f /usr/sbin/policy-rc.d
	((ok)) || { log "apt-get install failed; see $LOGS/apt.log"; exit 1; }
}

mkdir -p "$OUT"
rm -rf "$OUT/wrk" "$OUT/stampede" "$OUT/values" "$LOGS" "$RUN" "$OUT/results.md"
mkdir -p "$BIN" "$LOGS" "$RUN" "$CACHE" "$OUT/wrk" "$OUT/stampede" "$OUT/values" "$SHM"
ulimit -n 65536 2>/dev/null || ulimit -n 4096 || true
T0=$(date +%s)

install_deps
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
WRK=$(command -v wrk)

log "building regmirror, the upstream and the clients"
go build -o "$BIN/regmirror" ./cmd/regmirror
go build -o "$BIN/upstream" ./bench/upstream
go build -o "$BIN/tool" ./bench/tool
# The net/http ceiling rows come from the profiling harness, which copies the
# mirror's wiring; a build failure there only drops those rows.
HAVE_BARE=1
go build -tags benchharness -o "$BIN/profile" ./bench/profile >"$LOGS/build-profile.log" 2>&1 || HAVE_BARE=0
RM=$BIN/regmirror
TOOL=$BIN/tool

# --- The sync against its floor (bench/sync.sh): its own upstream (nginx
# serving files) and data directories, so it runs first and alone.
if want sync; then
	log "sync against the floor (bench/sync.sh)"
	OUT=$OUT SHM=${SHM%/*} SYNC_MAPPINGS=${SYNC_MAPPINGS:-$([[ $QUICK == 1 ]] && echo 1000 || echo 10000)} bench/sync.sh 2>&1 | tee "$LOGS/sync-speed.txt" >&2
fi

# --- Cold misses through serve (bench/cold.sh): its own static upstream and
# data directories, so it also runs alone.
if want cold; then
	log "cold misses through serve (bench/cold.sh)"
	OUT=$OUT SHM=${SHM%/*} COLD_ROUNDS=${COLD_ROUNDS:-$([[ $QUICK == 1 ]] && echo 1 || echo 3)} bench/cold.sh 2>&1 | tee "$LOGS/cold-misses.txt" >&2
fi

# --- The memory of a large repository (bench/bigmem.sh): long (a repository
# of 100,000 mappings and two syncs of it), so only when asked for by name.
if want bigmem; then
	log "a large repository in bounded memory (bench/bigmem.sh)"
	OUT=$OUT SHM=${SHM%/*} ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS \
		bench/bigmem.sh 2>&1 | tee "$LOGS/bigmem.txt" >&2
fi
# Only those asked for: the rest of the suite's set-up is not needed.
if [[ -z $(echo " $ONLY " | sed 's/ sync / /g; s/ cold / /g; s/ bigmem / /g' | tr -d ' ') ]]; then
	log "done in $(($(date +%s) - T0)) s; results in ${OUT#"$ROOT"/}/values/"
	exit 0
fi

mapfile -t P < <("$TOOL" ports 17)
P_UP=${P[0]} P_SLOW=${P[1]} P_BIG=${P[2]} P_RP=${P[3]}
P_RM=${P[4]} P_RMD=${P[5]} P_RMS=${P[6]} P_RMQ=${P[7]} P_RMM=${P[8]}
P_NGC=${P[9]} P_NGS=${P[10]} P_NGST=${P[11]}
P_GOSC=${P[12]} P_GOW=${P[13]} P_PPROF1=${P[14]} P_PPROF2=${P[15]} P_RMN=${P[16]}

{
	echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "regmirror: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null || echo ' + uncommitted changes'); $("$RM" version 2>/dev/null | head -1)"
	echo "machine:   $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "           wrk, the servers and the upstream share these cores"
	echo "software:  $(go version | cut -d' ' -f3-), $("$NGINX" -v 2>&1 | cut -d' ' -f3-), $("$WRK" -v 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo "settings:  QUICK=$QUICK ROUNDS=$ROUNDS DURATION=$DURATION wrk -t$THREADS -c$CONNS; mappings $MAPPINGS_SMALL/$MAPPINGS_BIG; $MEM_OBJECTS objects; $RP_PACKAGES RefPack packages"
	echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

wrk_run() { # wrk_run OUTFILE URL [LUA-SCRIPT SCRIPT-ARG…]
	local f=$1 url=$2 script=()
	shift 2
	(($#)) && script=(-s "$1") && shift
	"$WRK" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${script[@]}" "$url" -- "$@" >"$f" 2>&1 || true
	sleep 1
}

# check_same NAME URL SHA256: the server answers 200 with exactly these bytes.
check_same() {
	local got
	got=$(curl -sf "$2" | sha256sum | cut -d' ' -f1) || true
	[[ $got == "$3" ]] || { log "$1: $2 does not answer the upstream's bytes"; exit 1; }
}

# --- 2. The upstreams -----------------------------------------------------
log "starting the upstreams"
start upstream "$BIN/upstream" -listen "127.0.0.1:$P_UP" -mappings "$MAPPINGS_SMALL" -seed "$SEED" \
	-files "$MEM_OBJECTS" -file-size "$MEM_OBJECT_BYTES" -stampede-ids 0
start upstream-slow "$BIN/upstream" -listen "127.0.0.1:$P_SLOW" -mappings 0 -delay 300ms \
	-stampede-ids $((2 * ROUNDS))
wait_http "http://127.0.0.1:$P_UP/_count" 180s
wait_http "http://127.0.0.1:$P_SLOW/_count"
UP=http://127.0.0.1:$P_UP
META_PATH="/packages/bench/doc/meta?version=1.0.0"
ZIP_PATH="/packages/bench/zip?version=1.0.0"

# --- 3. nginx: proxy_cache in front of the same upstream, and static files --
NG=$RUN/nginx
mkdir -p "$NG/tmp" "$NG/cache" "$NG/cache-stampede" "$RUN/static/packages/bench/doc"
curl -sf "$UP$META_PATH" -o "$RUN/static/packages/bench/doc/meta"
curl -sf "$UP$ZIP_PATH" -o "$RUN/static/packages/bench/zip"
META_SHA=$(sha256sum <"$RUN/static/packages/bench/doc/meta" | cut -d' ' -f1)
ZIP_SHA=$(sha256sum <"$RUN/static/packages/bench/zip" | cut -d' ' -f1)
cat >"$NG/nginx.conf" <<EOF
# Generated by bench/run.sh.
worker_processes auto;
$([[ $(id -u) == 0 ]] && echo "user root;")
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;   # wrk keeps its connections; so does regmirror
    default_type application/octet-stream;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;

    proxy_cache_path $NG/cache levels=1:2 keys_zone=hits:16m max_size=4g inactive=7d use_temp_path=off;
    proxy_cache_path $NG/cache-stampede levels=1:2 keys_zone=stampede:4m max_size=1g inactive=7d use_temp_path=off;
    upstream up_main { server 127.0.0.1:$P_UP; keepalive 32; }
    upstream up_slow { server 127.0.0.1:$P_SLOW; keepalive 32; }

    # nginx proxy_cache in front of the upstream regmirror uses.
    server {
        listen 127.0.0.1:$P_NGC;
        location / {
            proxy_pass http://up_main;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache hits;
            proxy_cache_lock on;
            proxy_cache_valid 200 7d;
            add_header X-Cache \$upstream_cache_status;
        }
    }
    # The same, in front of the slowed upstream of the stampede.
    server {
        listen 127.0.0.1:$P_NGST;
        location / {
            proxy_pass http://up_slow;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache stampede;
            proxy_cache_lock on;
            proxy_cache_valid 200 7d;
            add_header X-Cache \$upstream_cache_status;
        }
    }
    # The same bytes as static files: the upper bound of this machine.
    server {
        listen 127.0.0.1:$P_NGS;
        root $RUN/static;
        location = /packages/bench/doc/meta { default_type "application/json; charset=utf-8"; }
        location = /packages/bench/zip { default_type application/zip; }
    }
}
EOF
"$NGINX" -t -p "$NG" -c "$NG/nginx.conf" >"$LOGS/nginx-t.log" 2>&1 || { cat "$LOGS/nginx-t.log" >&2; exit 1; }
start nginx "$NGINX" -p "$NG" -c "$NG/nginx.conf" -g 'daemon off;'

# serve NAME PORT DATA [flags…]: a regmirror serve in the background, waited for.
serve() {
	local name=$1 port=$2 data=$3
	shift 3
	start "$name" "$RM" serve --listen "127.0.0.1:$port" --data "$data" --log-level warn "$@"
	wait_http "http://127.0.0.1:$port/readyz" 120s
}

# --- 4. Cached hits ---------------------------------------------------------
if want hits; then
	log "cached hits: regmirror, nginx proxy_cache, nginx static, and the net/http ceiling"
	serve regmirror "$P_RM" "$RUN/rm-hits" --refpack-upstream "$UP" --hydrilla-upstream "$UP/api_v2"
	# The same zip held in the memory tier instead of sent from its blob file.
	serve regmirror-mem "$P_RMD" "$RUN/rm-hits-mem" --refpack-upstream "$UP" --hydrilla-upstream "$UP/api_v2" \
		--memory-max-item 2MiB
	wait_http "http://127.0.0.1:$P_NGS/packages/bench/doc/meta"
	# The same mirror with every request through net/http: what the fast lane gains.
	serve regmirror-nolane "$P_RMN" "$RUN/rm-hits-nolane" --refpack-upstream "$UP" --hydrilla-upstream "$UP/api_v2" \
		--fast-lane=false
	declare -A BASE=([regmirror]=http://127.0.0.1:$P_RM [regmirror-mem]=http://127.0.0.1:$P_RMD
		[regmirror-nolane]=http://127.0.0.1:$P_RMN
		[nginx-cache]=http://127.0.0.1:$P_NGC [nginx-static]=http://127.0.0.1:$P_NGS
		[go-servecontent]=http://127.0.0.1:$P_GOSC [go-write]=http://127.0.0.1:$P_GOW)
	META_SERVERS="regmirror regmirror-nolane nginx-cache nginx-static"
	ZIP_SERVERS="regmirror regmirror-mem nginx-cache nginx-static"
	if [[ $HAVE_BARE == 1 ]]; then
		# net/http alone answering the /meta bytes from memory, with the
		# mirror's headers: http.ServeContent, and headers plus one Write.
		start go-servecontent "$BIN/profile" -bare servecontent -bare-url "$UP$META_PATH" \
			-listen "127.0.0.1:$P_GOSC" -pprof "127.0.0.1:$P_PPROF1"
		start go-write "$BIN/profile" -bare write -bare-url "$UP$META_PATH" \
			-listen "127.0.0.1:$P_GOW" -pprof "127.0.0.1:$P_PPROF2"
		wait_http "${BASE[go-servecontent]}$META_PATH"
		wait_http "${BASE[go-write]}$META_PATH"
		META_SERVERS="$META_SERVERS go-servecontent go-write"
	else
		log "  bench/profile does not build (see $LOGS/build-profile.log): no net/http ceiling rows"
	fi
	# Warm every server, then check it answers the upstream's bytes from its cache.
	for s in regmirror regmirror-mem regmirror-nolane nginx-cache nginx-static; do
		for _ in 1 2 3; do
			curl -sf -o /dev/null "${BASE[$s]}$META_PATH"
			curl -sf -o /dev/null "${BASE[$s]}$ZIP_PATH"
		done
		check_same "$s" "${BASE[$s]}$META_PATH" "$META_SHA"
		check_same "$s" "${BASE[$s]}$ZIP_PATH" "$ZIP_SHA"
		if [[ $s != nginx-static ]]; then
			for p in "$META_PATH" "$ZIP_PATH"; do
				xc=$(curl -sf -D - -o /dev/null "${BASE[$s]}$p" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache" {print $2}')
				[[ $xc == HIT ]] || { log "$s: $p is not a cache hit after warming (X-Cache: $xc)"; exit 1; }
			done
		fi
	done
	for s in $META_SERVERS; do
		curl -sf -D "$OUT/values/headers-$s-meta.txt" -o /dev/null "${BASE[$s]}$META_PATH"
	done
	HITS_BEFORE=$(curl -sf "$UP/_count?prefix=/packages/bench")
	for r in $(seq "$ROUNDS"); do
		for b in meta1k zip1m; do
			[[ $b == meta1k ]] && p=$META_PATH servers=$META_SERVERS || p=$ZIP_PATH servers=$ZIP_SERVERS
			for s in $servers; do
				log "  round $r/$ROUNDS: $b from $s"
				wrk_run "$OUT/wrk/$b.$s.r$r.txt" "${BASE[$s]}$p"
			done
		done
	done
	HITS_AFTER=$(curl -sf "$UP/_count?prefix=/packages/bench")
	printf '{"before":%s,"after":%s}\n' "$HITS_BEFORE" "$HITS_AFTER" >"$OUT/values/hits-upstream.json"
	stop regmirror
	stop regmirror-mem
	stop regmirror-nolane
	stop go-servecontent
	stop go-write
fi

# --- 5. Stampede ----------------------------------------------------------
if want stampede; then
	log "stampede: 200 concurrent first requests for an uncached 1 MiB zip, upstream +300 ms"
	serve regmirror-stampede "$P_RMS" "$RUN/rm-stampede" --refpack-upstream "http://127.0.0.1:$P_SLOW" \
		--hydrilla-upstream "http://127.0.0.1:$P_SLOW/api_v2"
	wait_http "http://127.0.0.1:$P_NGST/_count" # the nginx server answers (this is not cached)
	for r in $(seq "$ROUNDS"); do
		for s in regmirror nginx-cache; do
			if [[ $s == regmirror ]]; then
				id=$(printf 'stampede-%02d' "$r") base=http://127.0.0.1:$P_RMS
			else
				id=$(printf 'stampede-%02d' $((ROUNDS + r))) base=http://127.0.0.1:$P_NGST
			fi
			log "  round $r/$ROUNDS: $s (bench/$id)"
			"$TOOL" stampede -n 200 -url "$base/packages/bench/$id?version=1.0.0" \
				-count-url "http://127.0.0.1:$P_SLOW/_count?prefix=/packages/bench/$id" \
				-out "$OUT/stampede/$s.r$r.json" >/dev/null
		done
	done
	stop regmirror-stampede
fi

# --- 6. /query, start-up and memory at N mappings ---------------------------
# A source digest names a kept data directory: the generated repository's
# (a data directory outlives upgrades of regmirror, as a user's does; one the
# current regmirror cannot answer from is synced again).
src_key() {
	cat hydrilla/hydrillatest/*.go bench/upstream/main.go 2>/dev/null | sha256sum | cut -c1-12
}

# hydrilla_data N PORT → sets DATA, HY_BASE, QUERIES, UPNAME, REUSED, KEEP: a
# data directory on tmpfs holding a complete sync of a generated repository of
# N mappings, and the upstream base URL it was synced from. A sync of 100,000
# mappings takes long (see BENCHMARKS.md), so its data directory is kept as a
# tar in $CACHE, named by the digest of the generator's and the store's source,
# and restored by later runs unless FRESH=1. A restored directory names an
# upstream port that may be closed now: /query answers from the index alone.
hydrilla_data() {
	local n=$1 port=$2 fresh=${3:-${FRESH:-0}} key tarf d
	key=$(src_key)
	tarf=$CACHE/hydrilla-$n-seed$SEED-$key.tar
	d=$SHM/hy-$n
	REUSED=0 KEEP="" UPNAME=""
	rm -rf "$d" && mkdir -p "$d"
	if [[ $fresh != 1 && -s $tarf ]]; then
		log "  restoring the synced data directory kept in ${tarf#"$ROOT"/}"
		if tar -C "$d" -xf "$tarf" && [[ -s $d/base-url && -s $d/queries.txt && -d $d/data ]]; then
			DATA=$d/data HY_BASE=$(cat "$d/base-url") QUERIES=$d/queries.txt REUSED=1
			printf '{"name":"Hydrilla sync, %d mappings","reused":"%s"}\n' "$n" "${tarf#"$ROOT"/}" >"$OUT/values/sync-hydrilla-$n.json"
			return
		fi
		rm -rf "$d" && mkdir -p "$d"
	fi
	if [[ $n == "$MAPPINGS_SMALL" ]]; then
		HY_BASE=$UP/api_v2
	else
		UPNAME=upstream-$n
		log "  generating a repository of $n mappings"
		start "$UPNAME" "$BIN/upstream" -listen "127.0.0.1:$port" -mappings "$n" -seed "$SEED" -refpack-bench=false
		wait_http "http://127.0.0.1:$port/_count" 300s
		HY_BASE=http://127.0.0.1:$port/api_v2
	fi
	log "  regmirror sync --hydrilla-upstream $HY_BASE ($n mappings, data directory on tmpfs)"
	"$TOOL" run -name "Hydrilla sync, $n mappings (data directory on tmpfs)" -out "$OUT/values/sync-hydrilla-$n.json" -- \
		"$RM" sync --data "$d/data" --hydrilla-upstream "$HY_BASE" --log-level warn >"$LOGS/sync-hydrilla-$n.log" 2>&1
	curl -sf "${HY_BASE%/api_v2}/_queries?n=5000" >"$d/queries.txt"
	echo "$HY_BASE" >"$d/base-url"
	DATA=$d/data QUERIES=$d/queries.txt KEEP=$tarf
}

if want query; then
	for n in "$MAPPINGS_SMALL" "$MAPPINGS_BIG"; do
		log "/query at $n mappings"
		hydrilla_data "$n" "$P_BIG"
		root=${HY_BASE%/api_v2}
		q0=-1
		[[ $REUSED == 0 ]] && q0=$(curl -sf "$root/_count?prefix=/api_v2/query" | sed 's/.*"count":\([0-9]*\).*/\1/')
		# A synced mirror answers /query from its index while the sync is younger
		# than metadata-max-age (or twice sync-interval): a long one, since a
		# kept data directory may be days old.
		qb=http://127.0.0.1:$P_RMQ
		for attempt in 1 2; do
			serve regmirror-query "$P_RMQ" "$DATA" --hydrilla-upstream "$HY_BASE" --refpack-upstream "$root" \
				--metadata-max-age 8760h
			# Measure the serving, not the background start-up work.
			"$TOOL" idle -pid "${PID[regmirror-query]}" -out "$OUT/values/query-$n-settle.json" >/dev/null
			first=$(head -1 "$QUERIES")
			hdr=$(curl -s -D - -o "$OUT/values/query-$n-sample.json" "$qb$first" | tr -d '\r')
			if grep -qi '^x-cache: HIT' <<<"$hdr" && grep -qi 'pattern index' <<<"$hdr" && grep -q '"identifier"' "$OUT/values/query-$n-sample.json"; then
				break
			fi
			stop regmirror-query
			if [[ $REUSED == 1 && $attempt == 1 ]]; then
				log "  the kept data directory does not answer /query from the index with this regmirror: syncing again"
				hydrilla_data "$n" "$P_BIG" 1
				root=${HY_BASE%/api_v2}
				q0=$(curl -sf "$root/_count?prefix=/api_v2/query" | sed 's/.*"count":\([0-9]*\).*/\1/')
				continue
			fi
			log "regmirror does not answer /query from its pattern index at $n mappings:"
			echo "$hdr" >&2
			exit 1
		done
		for r in $(seq "$ROUNDS"); do
			log "  round $r/$ROUNDS: /query, $(wc -l <"$QUERIES") distinct URLs"
			wrk_run "$OUT/wrk/query-$n.regmirror.r$r.txt" "$qb" "$ROOT/bench/query.lua" "$QUERIES"
		done
		"$TOOL" mem -pid "${PID[regmirror-query]}" -out "$OUT/values/serve-$n.json" >/dev/null
		q1=-1
		[[ $q0 != -1 ]] && q1=$(curl -sf "$root/_count?prefix=/api_v2/query" | sed 's/.*"count":\([0-9]*\).*/\1/')
		printf '{"upstream_queries":%s,"query_urls":%s}\n' "$([[ $q0 == -1 ]] && echo -1 || echo $((q1 - q0)))" \
			"$(wc -l <"$QUERIES")" >"$OUT/values/query-$n.json"
		stop regmirror-query
		if [[ $n == "$MAPPINGS_BIG" ]]; then
			for r in $(seq "$ROUNDS"); do
				log "  start-up to ready with $n mappings, run $r/$ROUNDS"
				"$TOOL" startup -settle -ready "$qb/readyz" -timeout 120s -log "$LOGS/startup-$n.log" \
					-out "$OUT/values/startup-$n.r$r.json" -- \
					"$RM" serve --listen "127.0.0.1:$P_RMQ" --data "$DATA" --hydrilla-upstream "$HY_BASE" \
					--refpack-upstream "$root" --log-level warn >/dev/null
			done
		fi
		[[ -n $UPNAME ]] && stop "$UPNAME"
		if [[ -n $KEEP ]]; then
			log "  keeping the synced data directory for later runs: ${KEEP#"$ROOT"/}"
			rm -f "$CACHE"/hydrilla-"$n"-seed"$SEED"-*.tar
			tar -C "$SHM/hy-$n" -cf "$KEEP.tmp" . && mv "$KEEP.tmp" "$KEEP"
		fi
		rm -rf "$SHM/hy-$n"
	done
fi

# --- 7. Memory after serving many distinct cached objects -------------------
if want mem; then
	log "memory: $MEM_OBJECTS distinct objects of $MEM_OBJECT_BYTES bytes through a mirror whose memory tier is $MEM_LIMIT"
	serve regmirror-mem "$P_RMM" "$RUN/rm-mem" --refpack-upstream "$UP" --hydrilla-upstream "$UP/api_v2" \
		--memory-cache-size "$MEM_LIMIT"
	"$TOOL" mem -pid "${PID[regmirror-mem]}" -out "$OUT/values/mem-objects.base.json" >/dev/null
	"$TOOL" fetch -base "http://127.0.0.1:$P_RMM" -list "$UP/_files" -prefix /file/sha256/ -c 16 -rounds 2 \
		-pid "${PID[regmirror-mem]}" -meta "object_bytes=$MEM_OBJECT_BYTES" -meta "memory_cache_size=$MEM_LIMIT" \
		-out "$OUT/values/mem-objects.json" >/dev/null
	stop regmirror-mem
fi

# --- 8. RefPack sync --------------------------------------------------------
if want refpack; then
	log "RefPack sync: $RP_PACKAGES packages x 3 versions"
	start upstream-refpack "$BIN/upstream" -listen "127.0.0.1:$P_RP" -mappings 0 -refpack-bench=false \
		-packages "$RP_PACKAGES" -versions 3
	wait_http "http://127.0.0.1:$P_RP/_count" 120s
	name="RefPack sync, $RP_PACKAGES packages x 3 versions (--all-versions, data directory on disk)"
	if "$TOOL" run -name "$name" -out "$OUT/values/sync-refpack.json" -- \
		"$RM" sync --data "$RUN/rm-refpack" --refpack-upstream "http://127.0.0.1:$P_RP" --all-versions \
		--log-level warn >"$LOGS/sync-refpack.log" 2>&1; then
		log "  $(grep -m1 '^refpack' "$LOGS/sync-refpack.log" || true)"
	else
		why=$(grep -o -m1 -i '[^:]*not implemented[^"]*' "$LOGS/sync-refpack.log" || true)
		if [[ -n $why ]]; then
			log "  RefPack sync: not implemented ($why); skipped"
			printf '{"name":"%s","skipped":"not implemented: regmirror sync said \\"%s\\""}\n' "$name" "$(echo "$why" | sed 's/^ *//; s/"/\\"/g')" >"$OUT/values/sync-refpack.json"
		else
			log "  RefPack sync failed: see $LOGS/sync-refpack.log"
			printf '{"name":"%s","skipped":"failed: see bench/out/logs/sync-refpack.log"}\n' "$name" >"$OUT/values/sync-refpack.json"
		fi
	fi
	stop upstream-refpack
fi

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg); run took $(($(date +%s) - T0)) s" >>"$OUT/env.txt"
"$TOOL" report -dir "$OUT" -out "$OUT/results.md"
log "done in $(($(date +%s) - T0)) s; results in ${OUT#"$ROOT"/}/results.md"
