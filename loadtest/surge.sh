#!/usr/bin/env bash
# A dashboard surge against a caching proxy: CLIENTS connections load the same 2 MB immutable
# JavaScript file and the same Prometheus-style `query_range` GET (no caching headers upstream,
# micro-cached for 1 s by the proxy) for DURATION seconds. ringway (`cache = true`, `cache_ttl =
# "1s"` on the query route) against nginx (`proxy_cache` with `proxy_cache_lock on`,
# `proxy_cache_valid 200 1s` on the query location), one worker each on core 0, in front of the
# same nginx backend on core 1 whose access log counts the requests that reached it. The
# asset surge runs first, then the query surge, each from one wrk on core 1, so each kind's
# proxy CPU per response stands on its own.
#
# Reported per proxy: requests that reached the upstream (per path), responses served, proxy
# CPU per response (whole process, schedstat), bytes the clients read. By default compression
# is off everywhere: this measures the cache alone. With COMPRESS=1 the clients send
# `Accept-Encoding: gzip` and every proxy gzips JavaScript and JSON at GZIP_LEVEL: ringway
# (`compress = true`, `[compress] gzip_level`) and Varnish keep the gzipped body in the cache;
# nginx (`gzip on`, `gzip_comp_level`) caches the upstream's body and gzips each response.
#
#   loadtest/surge.sh
#   COMPRESS=1 loadtest/surge.sh
#   DURATION=5 CLIENTS=200 loadtest/surge.sh     # smoke run
#
# nginx_stale is the same nginx with `proxy_cache_use_stale updating` and
# `proxy_cache_background_update on`: without them nginx's lock does not cover expired entries.
# varnish is Varnish (the Debian package's varnishd, malloc storage) with the same TTLs: the
# asset's own Cache-Control, and 1 s without grace on the query, so an expired answer is
# fetched again while the requests for it wait (Varnish's waiting list), as in ringway. When
# varnishd is not installed the varnish row is skipped, and the report says so.
#
# Env: DURATION (s, 20), CLIENTS (1000), ROUNDS (1), PROXIES ("nginx nginx_stale varnish
#      ringway"), COMPRESS (0 or 1), GZIP_LEVEL (1-9, 5: ringway's default), RINGWAY_BIN,
#      KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-1000}
ROUNDS=${ROUNDS:-1}
PROXIES=${PROXIES:-nginx nginx_stale varnish ringway}
COMPRESS=${COMPRESS:-0}
GZIP_LEVEL=${GZIP_LEVEL:-5}
for v in DURATION CLIENTS ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number, got '${!v}'"
done
((CLIENTS >= 2)) || lt_die "CLIENTS must be at least 2"
[[ $COMPRESS == 0 || $COMPRESS == 1 ]] || lt_die "COMPRESS must be 0 or 1, got '$COMPRESS'"
[[ $GZIP_LEVEL =~ ^[1-9]$ ]] || lt_die "GZIP_LEVEL must be 1 to 9, got '$GZIP_LEVEL'"
read -r -a proxies <<<"$PROXIES"
for p in "${proxies[@]}"; do
    [[ $p == nginx || $p == nginx_stale || $p == varnish || $p == ringway ]] ||
        lt_die "unknown proxy '$p' in PROXIES (nginx, nginx_stale, varnish, ringway)"
done
skipped=""
if [[ " ${proxies[*]} " == *" varnish "* ]] && ! command -v varnishd >/dev/null; then
    skipped="varnishd is not installed (Debian: apt-get install varnish): the varnish row was skipped."
    lt_log "$skipped"
    kept=()
    for p in "${proxies[@]}"; do [[ $p == varnish ]] || kept+=("$p"); done
    proxies=("${kept[@]}")
fi
cmdline="DURATION=$DURATION CLIENTS=$CLIENTS ROUNDS=$ROUNDS"
((COMPRESS)) && cmdline+=" COMPRESS=1 GZIP_LEVEL=$GZIP_LEVEL"
cmdline+=" loadtest/surge.sh"
wrk_accept=()
((COMPRESS)) && wrk_accept=(-H 'Accept-Encoding: gzip')

lt_require_tools nginx wrk curl
[[ " ${proxies[*]} " == *" ringway "* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open surge "$cmdline"

ASSET=/grafana/public/build/app.js
QUERY='/api/v1/query_range?query=sum(rate(http_requests_total%5B5m%5D))&start=1700000000&end=1700003600&step=15'
www="$LT_TMP/www"
mkdir -p "$www/grafana/public/build"
# Text like a minified bundle, exactly 2 MiB (no pipe cut short under pipefail).
head -c $((1600 * 1024)) /dev/urandom | base64 -w 100 >"$www$ASSET"
truncate -s $((2 * 1024 * 1024)) "$www$ASSET"
QUERY_BODY=$(printf '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[%s[1700003600,"1"]]}]}}' \
    "$(for i in $(seq 100); do printf '[%d,"%d.5"],' $((1700000000 + i * 15)) "$i"; done)")

lt_free_port backend_port
backend_log="$LT_TMP/backend/logs/access.log"
lt_start_backend_nginx "$backend_port" "
        access_log $backend_log;
        location = $ASSET {
            root $www;
            types { application/javascript js; }
            add_header Cache-Control \"public, max-age=31536000, immutable\";
        }
        location = /api/v1/query_range {
            default_type application/json;
            return 200 '$QUERY_BODY';
        }"

nginx_gzip=""
((COMPRESS)) && nginx_gzip="gzip on; gzip_comp_level $GZIP_LEVEL; gzip_types application/javascript application/json;
        gzip_min_length 1024; gzip_proxied any; gzip_vary on;"

start_nginx_cache() {
    local port=$1 name=${2:-nginx} extra=${3:-}
    # A fresh cache directory for each start: nginx keeps its disk cache across restarts.
    rm -rf "$LT_TMP/$name-cache"
    mkdir -p "$LT_TMP/$name-cache"
    # The cache zone is declared in http{}: lt_start_proxy_nginx takes location lines only, so
    # the proxy is written here with the same shape plus the cache.
    lt_nginx_conf "$LT_TMP/$name" "$(lt_affinity_mask "$LT_PROXY_CPU")" "
    proxy_cache_path $LT_TMP/$name-cache levels=1:2 keys_zone=surge:10m max_size=256m inactive=10m use_temp_path=off;
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
        $nginx_gzip
        $extra
        location / {
            proxy_pass http://backend;
        }
        location = /api/v1/query_range {
            proxy_pass http://backend;
            proxy_cache_valid 200 1s;
        }
    }"
    lt_nginx_run "$name" "$LT_PROXY_CPU" "$LT_TMP/$name"
    lt_wait_ready "$name" "$LT_LAST_PID" "$port"
    LT_PROXY_PID[$name]=$LT_LAST_PID
}

# nginx's lock covers only entries not in the cache yet: when one expires, every request goes
# upstream until one refreshes it. Serving the stale copy meanwhile is how nginx is told to send
# one request per expiry (a different promise: clients get the old answer during the refresh).
start_nginx_stale_cache() {
    start_nginx_cache "$1" nginx_stale "proxy_cache_use_stale updating; proxy_cache_background_update on;"
}

# Varnish: the asset keeps the backend's Cache-Control; the query gets 1 s and no grace (by
# default Varnish would keep it 120 s and then serve it stale while refreshing).
start_varnish_cache() {
    local port=$1 dir="$LT_TMP/varnish" gzip=""
    mkdir -p "$dir"
    ((COMPRESS)) && gzip='if (beresp.http.Content-Type ~ "javascript|json") { set beresp.do_gzip = true; }'
    cat >"$dir/surge.vcl" <<VCL
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$backend_port"; }
sub vcl_backend_response {
    if (bereq.url ~ "^/api/v1/query_range") {
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
    }
    $gzip
}
VCL
    # -j none: no privilege separation, so it runs as whoever runs this script.
    lt_spawn varnish "$LT_PROXY_CPU" varnishd -F -j none -n "$dir/work" -a "127.0.0.1:$port" \
        -f "$dir/surge.vcl" -s malloc,256m -p gzip_level="$GZIP_LEVEL" -p thread_pools=1
    lt_wait_ready varnish "$LT_LAST_PID" "$port"
    LT_PROXY_PID[varnish]=$LT_LAST_PID
}

start_ringway_cache() {
    local port=$1 compress=""
    ((COMPRESS)) && compress="compress = true"
    lt_start_proxy ringway "$port" "$backend_port" "cache = true
$compress

[[route]]
prefix = \"/api/v1/query_range\"
upstream = \"backend\"
cache = true
cache_ttl = \"1s\"
$compress

[compress]
gzip_level = $GZIP_LEVEL"
}

# check_gzip PROXY URL: with COMPRESS=1, the proxy must have sent gzip that decodes (checked
# after the surges, so the request that fills the cache is the surge's own).
check_gzip() {
    local p=$1 url=$2 hdr="$LT_TMP/check-$1.head"
    ((COMPRESS)) || return 0
    curl -sS --max-time 30 -H 'Accept-Encoding: gzip' -D "$hdr" -o "$LT_TMP/check-$p.gz" "$url" ||
        lt_die "$p: check request failed"
    grep -qi '^content-encoding: gzip' "$hdr" || lt_die "$p: response not gzip-encoded: $(cat "$hdr")"
    gzip -t "$LT_TMP/check-$p.gz" || lt_die "$p: gzip body does not decode"
}

upstream_count() { # PATH: backend access-log lines of GETs for it so far
    grep -cF "\"GET $1" "$backend_log" 2>/dev/null || true
}

read_bytes() { # WRK_OUTPUT: the "N requests in Ts, X GB read" figure, in bytes
    awk '/requests in/ { v = $(NF-1); u = v; sub(/[0-9.]+/, "", u); n = v + 0
        m = (u == "KB") ? 1024 : (u == "MB") ? 1048576 : (u == "GB") ? 1073741824 : 1; printf "%.0f\n", n * m }' "$1"
}

# surge PROXY KIND URL: CLIENTS connections on URL for DURATION seconds; prints "responses
# errors bytes_read upstream_requests cpu_ns" (upstream requests counted from before the
# first one, so the request that filled the cache is in).
surge() {
    local p=$1 kind=$2 url=$3 path=$4 pid=${LT_PROXY_PID[$1]} up0 cpu0 cpu1 req err
    up0=$(upstream_count "$path")
    cpu0=$(lt_cpu_ns "$pid")
    lt_run_bg taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$CLIENTS" -d"${DURATION}s" --timeout 10s "${wrk_accept[@]}" "$url" \
        >"$LT_TMP/wrk-$kind-$p.txt"
    cpu1=$(lt_cpu_ns "$pid")
    lt_proxy_gone "$p" "exited during the surge" && lt_die "$p died"
    read -r req _ _ _ err < <(lt_wrk_parse "$LT_TMP/wrk-$kind-$p.txt")
    echo "$req $err $(read_bytes "$LT_TMP/wrk-$kind-$p.txt") $(($(upstream_count "$path") - up0)) $((cpu1 - cpu0))"
}

declare -A asset_cpu=() query_cpu=() rows=()
for round in $(seq "$ROUNDS"); do
    for p in "${proxies[@]}"; do
        lt_free_port port
        "start_${p}_cache" "$port"
        pid=${LT_PROXY_PID[$p]}
        base="http://127.0.0.1:$port"
        row="| $round | $p |"
        for kind in asset query; do
            if [[ $kind == asset ]]; then url=$base$ASSET path=$ASSET; else url=$base$QUERY path=/api/v1/query_range; fi
            read -r req err bytes up cpu < <(surge "$p" "$kind" "$url" "$path")
            us=$(awk -v c="$cpu" -v n="$req" 'BEGIN { printf "%.2f", n ? c / n / 1000 : 0 }')
            if [[ $kind == asset ]]; then asset_cpu[$p]+="$us "; else query_cpu[$p]+="$us "; fi
            for m in req err bytes up us; do lt_csv_row "$round" "$p" "${kind}_$m" "${!m}"; done
            # wrk rounds what it read to two decimals of its unit: the bytes per response are as close.
            row+=" $up | $req | $us µs | $(awk -v b="$bytes" -v n="$req" 'BEGIN { printf "%.2f GB | %.1f KiB", b / 1073741824, n ? b / n / 1024 : 0 }') | $err |"
            lt_log "$p round $round, $kind: $up upstream requests, $req responses, $us µs proxy CPU each, $err errors"
            check_gzip "$p" "$url"
        done
        rows[$p]+="$row"$'\n'
        kill -TERM $(lt_proc_tree "$pid") 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
done

echo
compressed=""
((COMPRESS)) && compressed=", gzip level $GZIP_LEVEL on"
echo "## Dashboard surge: $CLIENTS clients, ${DURATION}s each on one 2 MB immutable asset, then on one query_range (micro-cached 1 s)$compressed"
echo
echo "\`$cmdline\`"
echo
lt_machine_info
if [[ " ${proxies[*]} " == *" varnish "* ]]; then echo "- $(varnishd -V 2>&1 | head -1 | sed 's/ revision.*/)/')"; fi
if [[ -n $skipped ]]; then echo "- $skipped"; fi
echo
echo "| round | proxy | asset: upstream requests | responses | proxy CPU per response | bytes read | per response | errors | query: upstream requests | responses | proxy CPU per response | bytes read | per response | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for p in "${proxies[@]}"; do printf '%s' "${rows[$p]:-}"; done
echo
lt_paired "Asset (cache hit) proxy CPU per response" asset_cpu "${proxies[@]}"
lt_paired "query_range proxy CPU per response" query_cpu "${proxies[@]}"
lt_log "rows in $LT_CSV"
