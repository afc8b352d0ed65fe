#!/usr/bin/env bash
# gzip compression cost: proxy CPU per MB compressed, ringway (`compress = true`, flate2 on
# zlib-rs) vs nginx (`gzip on`, system zlib), at the same gzip levels, one worker each pinned to
# core 0, no cache, in front of the same nginx backend on core 1 serving a 1 MiB script file.
# wrk on core 1 asks for `Accept-Encoding: gzip`. Prints, per level, the proxy's CPU ms per MB of
# uncompressed body, the ratio to nginx paired by round, and the compressed size each proxy
# sends; writes the table to loadtest/out/compress-<date>.md and its rows to
# loadtest/out/gzip-cpu-per-mb-<date>.csv.
#
#   loadtest/compress.sh     # levels 1 and 6, 3 rounds x 10 s
#   LEVELS="1" DURATION=5 ROUNDS=1 loadtest/compress.sh      # quick look
#
# Env: LEVELS ("1 6"), DURATION (s, 10), ROUNDS (3), CONNS (4), SIZE (bytes, 1048576),
#      WARMUP (s per proxy, 2), RINGWAY_BIN (skip the build), KEEP_TMP (keep configs/logs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LEVELS=${LEVELS:-1 6}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-4}
SIZE=${SIZE:-1048576}
WARMUP=${WARMUP:-2}
read -r -a levels <<<"$LEVELS"
for v in DURATION ROUNDS CONNS SIZE WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number, got '${!v}'"
done
for l in "${levels[@]}"; do [[ $l =~ ^[1-9]$ ]] || lt_die "LEVELS: gzip levels are 1 to 9, got '$l'"; done
((DURATION > 0 && ROUNDS > 0 && CONNS > 0 && SIZE >= 1024)) || lt_die "DURATION, ROUNDS, CONNS > 0, SIZE >= 1024"

cmdline="LEVELS=\"$LEVELS\" DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS"
[[ $SIZE != 1048576 ]] && cmdline+=" SIZE=$SIZE"
[[ $WARMUP != 2 ]] && cmdline+=" WARMUP=$WARMUP"
[[ -n ${RINGWAY_BIN:-} ]] && cmdline+=" RINGWAY_BIN=$RINGWAY_BIN"
cmdline+=" loadtest/compress.sh"

lt_require_tools nginx wrk curl
# Build before anything runs: a compile must never overlap a measurement.
LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open "gzip-cpu-per-mb" "$cmdline"

# --- the body: a script bundle's shape, the same bytes on every run ---------------------------
# Functions with varied names and numbers from a fixed-seed generator: it gzips about 4-5x,
# like minified dashboard JavaScript, not the 100x of a repeated line.
mkdir -p "$LT_TMP/www"
awk -v size="$SIZE" 'BEGIN {
    s = 12345; n = 0
    while (n < size) {
        # Park-Miller: products stay below 2^53, so every awk computes the same bytes.
        s = (s * 16807) % 2147483647; a = s % 9973
        s = (s * 16807) % 2147483647; b = s % 257
        line = sprintf("function f%d_%x(e,t){var n=e[%d]||t.get(\"k%d\");return n&&n.v%d?n.map(function(r){return r*%d+%d}):null}\n", a, b, b, a, b % 13, a, b)
        printf "%s", line; n += length(line)
    }
}' >"$LT_TMP/www/app.js"
truncate -s "$SIZE" "$LT_TMP/www/app.js"
lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        root $LT_TMP/www;
        types { application/javascript js; }
        location / { }"
lt_log "backend nginx on 127.0.0.1:$backend_port (pid $LT_BACKEND_PID, core $LT_LOAD_CPU), $SIZE-byte app.js"

# --- proxies: per level, nginx with gzip and ringway with compress, one worker each ------------
declare -A port=() pid=()
proxies=()
for l in "${levels[@]}"; do
    n="nginx_gzip$l" r="ringway_gzip$l"
    lt_free_port "port[$n]"
    # One nginx per level (the stock proxy block of lib.sh plus gzip), each in its own directory.
    LT_NGINX_NAME=$n lt_start_proxy_nginx "${port[$n]}" "$backend_port" \
        "gzip on; gzip_comp_level $l; gzip_types application/javascript; gzip_min_length 1024;"
    pid[$n]=$LT_LAST_PID
    lt_free_port "port[$r]"
    LT_RINGWAY_NAME=$r lt_start_proxy_ringway "${port[$r]}" "$backend_port" "compress = true

[compress]
gzip_level = $l"
    pid[$r]=$LT_LAST_PID
    proxies+=("$n" "$r")
done

# Each proxy must send gzip that decodes to the file; note the compressed size it sends.
declare -A gz_bytes=()
for p in "${proxies[@]}"; do
    hdr="$LT_TMP/$p.check-head"
    bytes=$(curl -sS --max-time 30 -H 'Accept-Encoding: gzip' -D "$hdr" -o "$LT_TMP/$p.check.gz" \
        -w '%{size_download}' "http://127.0.0.1:${port[$p]}/app.js") || lt_die "$p: request failed"
    grep -qi '^content-encoding: gzip' "$hdr" || lt_die "$p: response not gzip-encoded: $(cat "$hdr")"
    gzip -dc "$LT_TMP/$p.check.gz" | cmp -s - "$LT_TMP/www/app.js" || lt_die "$p: gzip body does not decode to app.js"
    gz_bytes[$p]=$bytes
    lt_log "$p on 127.0.0.1:${port[$p]} (pid ${pid[$p]}, core $LT_PROXY_CPU): $bytes gzip bytes"
done

wrk_cmd() { # PORT SECONDS: the command as printed in the report
    echo "taskset -c $LT_LOAD_CPU wrk -t1 -c$CONNS -d${2}s -H 'Accept-Encoding: gzip' http://127.0.0.1:$1/app.js"
}
run_wrk() { # PORT SECONDS
    lt_run_bg taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$CONNS" -d"${2}s" -H 'Accept-Encoding: gzip' \
        "http://127.0.0.1:$1/app.js"
}

if ((WARMUP > 0)); then
    for p in "${proxies[@]}"; do
        run_wrk "${port[$p]}" "$WARMUP" >/dev/null
    done
fi

# --- measured rounds: per level, the two proxies back to back, order alternating ---------------
declare -A ms=() errs=()
runs_md=""
mb=$(awk -v s="$SIZE" 'BEGIN { printf "%.6f", s / 1048576 }')
for ((r = 0; r < ROUNDS; r++)); do
    for l in "${levels[@]}"; do
        pair=("nginx_gzip$l" "ringway_gzip$l")
        ((r % 2)) && pair=("ringway_gzip$l" "nginx_gzip$l")
        for p in "${pair[@]}"; do
            kill -0 "${pid[$p]}" 2>/dev/null || { tail -n 20 "$LT_TMP/$p.log" >&2; lt_die "$p is gone"; }
            out="$LT_TMP/wrk-$p-$r.txt"
            c0=$(lt_cpu_ns "${pid[$p]}")
            run_wrk "${port[$p]}" "$DURATION" >"$out"
            sleep 0.2
            c1=$(lt_cpu_ns "${pid[$p]}")
            read -r req rs _ _ e < <(lt_wrk_parse "$out")
            ((req > 0)) || lt_die "$p completed no requests (see $out)"
            # wrk's "N requests in Xs, Y MB read": gzip responses are a fraction of the file.
            read_mb=$(awk '/requests in/ { v = $5; u = v; sub(/[0-9.]+/, "", u); v += 0
                if (u == "KB") v /= 1024; if (u == "GB") v *= 1024; print v; exit }' "$out")
            awk -v r="$read_mb" -v n="$req" -v mb="$mb" 'BEGIN { exit !(r < n * mb * 0.6) }' ||
                lt_die "$p: wrk read $read_mb MB for $req responses: not compressed (see $out)"
            v=$(awk -v a="$c0" -v b="$c1" -v n="$req" -v mb="$mb" 'BEGIN { printf "%.2f", (b - a) / 1e6 / n / mb }')
            ms[$p]+=" $v"
            errs[$p]=$((${errs[$p]:-0} + e))
            lt_log "round $((r + 1))/$ROUNDS $p: $req responses, $v ms CPU per MB, errors $e"
            lt_csv_row $((r + 1)) "$p" cpu_ms_per_mb "$v"
            runs_md+="| $((r + 1)) | $p | $req | $rs | $v | $e |"$'\n'
        done
    done
done

# --- table -------------------------------------------------------------------------------------
report() {
    echo "### gzip: proxy CPU per MB compressed (medians of $ROUNDS round(s) x ${DURATION}s, $CONNS connections, $SIZE-byte script)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "| level | nginx CPU ms/MB | ringway CPU ms/MB | ringway vs nginx (paired by round) | gzip bytes nginx / ringway | errors |"
    echo "|---:|---:|---:|---:|---:|---:|"
    for l in "${levels[@]}"; do
        local n="nginx_gzip$l" w="ringway_gzip$l" ratios
        ratios=$(lt_ratios "${ms[$w]}" "${ms[$n]}" | sort -g)
        printf '| %s | %.1f | %.1f | %.2f× (%s–%s) | %s / %s | %s |\n' "$l" "$(lt_median ${ms[$n]})" \
            "$(lt_median ${ms[$w]})" "$(lt_median $ratios)" "$(head -1 <<<"$ratios")" "$(tail -1 <<<"$ratios")" \
            "${gz_bytes[$n]}" "${gz_bytes[$w]}" "$((${errs[$n]} + ${errs[$w]}))"
    done
    echo
    echo "Each run: \`$(wrk_cmd PORT "$DURATION")\`; proxies pinned to core $LT_PROXY_CPU with one worker,"
    echo "backend nginx (sendfile) and wrk on core $LT_LOAD_CPU. CPU = sum of /proc/PID/task/*/schedstat field 1"
    echo "over the proxy's processes (after - before) / (responses x MB of uncompressed body): the whole"
    echo "proxy's work (relay and compression) per MB the client asked for. nginx: \`gzip on;"
    echo "gzip_comp_level N; gzip_types application/javascript;\` (proxy_buffering on, default"
    echo "gzip_buffers); ringway: \`compress = true\`, \`[compress] gzip_level = N\`."
    lt_machine_info
    echo
    echo "<details><summary>every run</summary>"
    echo
    echo "| round | proxy | responses | responses/s | CPU ms/MB | errors |"
    echo "|---:|---|---:|---:|---:|---:|"
    printf '%s' "$runs_md"
    echo
    echo "</details>"
}
outfile="$LT_OUT/compress-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
