#!/usr/bin/env bash
# A dashboard surge against a caching proxy: CLIENTS connections load the same 2 MB immutable
# JavaScript file and the same Prometheus-style `query_range` GET (no caching headers upstream,
# micro-cached for 1 s by the proxy) for DURATION seconds. ringway (`cache = true`, `cache_ttl =
# "1s"` on the query route) against nginx (`proxy_cache` with `proxy_cache_lock on`,
# `proxy_cache_valid 200 1s` on the query location), one worker each on core 0, in front of the
# same nginx backend on core 1 whose access log counts the requests that reached it. Half the
# connections ask for the asset, half for the query, from two wrk processes on core 1.
#
# Reported per proxy: requests that reached the upstream (per path), responses served, proxy
# CPU per response (whole process, schedstat), bytes the clients read. Compression is off on
# both sides: this measures the cache alone.
#
#   flock /work/notes/loadtest.lock loadtest/surge.sh
#   DURATION=5 CLIENTS=200 loadtest/surge.sh     # smoke run
#
# Env: DURATION (s, 20), CLIENTS (1000), ROUNDS (1), PROXIES ("nginx ringway"), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-1000}
ROUNDS=${ROUNDS:-1}
PROXIES=${PROXIES:-nginx ringway}
for v in DURATION CLIENTS ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number, got '${!v}'"
done
((CLIENTS >= 2)) || lt_die "CLIENTS must be at least 2"
read -r -a proxies <<<"$PROXIES"
for p in "${proxies[@]}"; do
    [[ $p == nginx || $p == ringway ]] || lt_die "unknown proxy '$p' in PROXIES (nginx, ringway)"
done
cmdline="DURATION=$DURATION CLIENTS=$CLIENTS ROUNDS=$ROUNDS loadtest/surge.sh"

lt_require_tools nginx wrk curl
[[ " ${proxies[*]} " == *" ringway "* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open surge "$cmdline"

ASSET=/grafana/public/build/app.js
QUERY='/api/v1/query_range?query=sum(rate(http_requests_total%5B5m%5D))&start=1700000000&end=1700003600&step=15'
www="$LT_TMP/www"
mkdir -p "$www/grafana/public/build"
head -c $((2 * 1024 * 1024)) /dev/urandom | base64 -w 100 | head -c $((2 * 1024 * 1024)) >"$www$ASSET"
QUERY_BODY=$(printf '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[%s[1700003600,"1"]]}]}}' \
    "$(for i in $(seq 200); do printf '[%d,"%d.5"],' $((1700000000 + i * 15)) "$i"; done)")

lt_free_port backend_port
backend_log="$LT_TMP/backend/logs/access.log"
lt_start_backend_nginx "$backend_port" "
        access_log $backend_log;
        location = $ASSET {
            root $www;
            add_header Cache-Control \"public, max-age=31536000, immutable\";
        }
        location = /api/v1/query_range {
            default_type application/json;
            return 200 '$QUERY_BODY';
        }"

start_nginx_cache() {
    local port=$1
    mkdir -p "$LT_TMP/nginx-cache"
    # The cache zone is declared in http{}: lt_start_proxy_nginx takes location lines only, so
    # the proxy is written here with the same shape plus the cache.
    lt_nginx_conf "$LT_TMP/nginx" "$(lt_affinity_mask "$LT_PROXY_CPU")" "
    proxy_cache_path $LT_TMP/nginx-cache levels=1:2 keys_zone=surge:10m max_size=256m inactive=10m use_temp_path=off;
    upstream backend {
        server 127.0.0.1:$backend_port;
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
        proxy_set_header Host \$http_host;
        proxy_cache surge;
        proxy_cache_lock on;
        proxy_cache_lock_timeout 60s;
        add_header Cache-Status \$upstream_cache_status;
        location / {
            proxy_pass http://backend;
        }
        location = /api/v1/query_range {
            proxy_pass http://backend;
            proxy_cache_valid 200 1s;
        }
    }"
    lt_nginx_run nginx "$LT_PROXY_CPU" "$LT_TMP/nginx"
    lt_wait_ready nginx "$LT_LAST_PID" "$port"
    LT_PROXY_PID[nginx]=$LT_LAST_PID
}

start_ringway_cache() {
    local port=$1
    lt_start_proxy ringway "$port" "$backend_port" "cache = true

[[route]]
prefix = \"/api/v1/query_range\"
upstream = \"backend\"
cache = true
cache_ttl = \"1s\""
}

upstream_count() { # PATH: backend access-log lines of GETs for it so far
    grep -cF "\"GET $1" "$backend_log" 2>/dev/null || true
}

read_bytes() { # WRK_OUTPUT: the "N requests in Ts, X GB read" figure, in bytes
    awk '/requests in/ { v = $(NF-1); u = v; sub(/[0-9.]+/, "", u); n = v + 0
        m = (u == "KB") ? 1024 : (u == "MB") ? 1048576 : (u == "GB") ? 1073741824 : 1; printf "%.0f\n", n * m }' "$1"
}

declare -A cpu_per=() rows=()
for round in $(seq "$ROUNDS"); do
    for p in "${proxies[@]}"; do
        lt_free_port port
        "start_${p}_cache" "$port"
        pid=${LT_PROXY_PID[$p]}
        base="http://127.0.0.1:$port"
        # The asset must come through whole before the surge starts.
        got=$(curl -s -o /dev/null -w '%{size_download}' "$base$ASSET")
        ((got == 2 * 1024 * 1024)) || lt_die "$p: the asset came through with $got bytes"
        asset0=$(upstream_count "$ASSET")
        query0=$(upstream_count /api/v1/query_range)
        cpu0=$(lt_cpu_ns "$pid")
        half=$((CLIENTS / 2))
        taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$half" -d"${DURATION}s" --timeout 10s "$base$ASSET" >"$LT_TMP/wrk-asset-$p.txt" &
        w1=$!
        taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$((CLIENTS - half))" -d"${DURATION}s" --timeout 10s "$base$QUERY" >"$LT_TMP/wrk-query-$p.txt" &
        w2=$!
        LT_PIDS+=("$w1" "$w2")
        wait "$w1" "$w2"
        unset 'LT_PIDS[-1]'
        unset 'LT_PIDS[-1]'
        cpu1=$(lt_cpu_ns "$pid")
        lt_proxy_gone "$p" "exited during the surge" && lt_die "$p died"
        asset_up=$(($(upstream_count "$ASSET") - asset0))
        query_up=$(($(upstream_count /api/v1/query_range) - query0))
        read -r areq _ _ _ aerr < <(lt_wrk_parse "$LT_TMP/wrk-asset-$p.txt")
        read -r qreq _ _ _ qerr < <(lt_wrk_parse "$LT_TMP/wrk-query-$p.txt")
        bytes=$(($(read_bytes "$LT_TMP/wrk-asset-$p.txt") + $(read_bytes "$LT_TMP/wrk-query-$p.txt")))
        total=$((areq + qreq))
        us=$(awk -v c=$((cpu1 - cpu0)) -v n="$total" 'BEGIN { printf "%.2f", n ? c / n / 1000 : 0 }')
        cpu_per[$p]+="$us "
        lt_csv_row "$round" "$p" asset_upstream_requests "$asset_up"
        lt_csv_row "$round" "$p" query_upstream_requests "$query_up"
        lt_csv_row "$round" "$p" responses "$total"
        lt_csv_row "$round" "$p" cpu_us_per_response "$us"
        lt_csv_row "$round" "$p" bytes_read "$bytes"
        lt_csv_row "$round" "$p" errors "$((aerr + qerr))"
        rows[$p]+="| $round | $p | $asset_up | $query_up | $areq | $qreq | $us µs | $(awk -v b="$bytes" 'BEGIN { printf "%.2f GB", b / 1073741824 }') | $((aerr + qerr)) |"$'\n'
        lt_log "$p round $round: upstream asset $asset_up, query $query_up; responses $areq + $qreq; $us µs CPU each"
        kill -TERM $(lt_proc_tree "$pid") 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
done

echo
echo "## Dashboard surge: $CLIENTS clients, ${DURATION}s, one asset (2 MB, immutable) and one query_range (micro-cached 1 s)"
echo
echo "\`$cmdline\`"
echo
lt_machine_info
echo
echo "| round | proxy | asset requests upstream | query requests upstream | asset responses | query responses | proxy CPU per response | bytes read by clients | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for p in "${proxies[@]}"; do printf '%s' "${rows[$p]:-}"; done
echo
lt_paired "Proxy CPU per response" cpu_per "${proxies[@]}"
lt_log "rows in $LT_CSV"
