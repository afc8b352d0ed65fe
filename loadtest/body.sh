#!/usr/bin/env bash
# Large-body cost: ringway vs nginx vs HAProxy (one worker each, pinned to core 0) relaying
# 1 MiB responses from the same nginx backend (sendfile) on core 1, loaded by wrk on core 1.
# Reports the proxy's CPU seconds per GB relayed, with the ratio to nginx, and proxy + backend
# (on loopback the sender is charged the receiver's work, so a proxy can shift cost onto its
# neighbours; the sum is the honest figure).
#
#   loadtest/body.sh                         # 3 rounds x 3 proxies x 10 s, 16 connections
#   DURATION=3 ROUNDS=1 loadtest/body.sh     # quick look
#
# Env: DURATION (s, 10), ROUNDS (3), CONNS (16), SIZE_KB (1024), PROXIES, RINGWAY_BIN, KEEP_TMP.
# nginx runs with its default proxy buffering; HAProxy with its defaults (no splice options).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
SIZE_KB=${SIZE_KB:-1024}
LT_DEFAULT_PROXIES="nginx haproxy ringway"
PROXIES=${PROXIES:-$LT_DEFAULT_PROXIES}
read -r -a proxies <<<"$PROXIES"
lt_counts --positive DURATION ROUNDS CONNS SIZE_KB
lt_check_proxies "$PROXIES"

cmdline="DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS SIZE_KB=$SIZE_KB $(lt_cmdline_env)loadtest/body.sh"

lt_require_tools nginx haproxy wrk curl
[[ " $PROXIES " == *" ringway "* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
size_name=${SIZE_KB}k
((SIZE_KB % 1024 == 0)) && size_name=$((SIZE_KB / 1024))mib
lt_csv_open "body-$size_name-cpu" "$cmdline"

# --- backend: a static file, sendfile, keep-alive ----------------------------------------------
mkdir -p "$LT_TMP/www"
head -c "$((SIZE_KB * 1024))" /dev/urandom >"$LT_TMP/www/body.bin"
lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        sendfile on;
        tcp_nopush on;
        root $LT_TMP/www;"
lt_log "backend nginx on 127.0.0.1:$backend_port (pid $LT_BACKEND_PID, core $LT_LOAD_CPU)"

declare -A port=()
for p in "${proxies[@]}"; do
    lt_free_port "port[$p]"
    lt_start_proxy "$p" "${port[$p]}" "$backend_port"
    curl -sS --max-time 10 -o "$LT_TMP/$p.check-body" "http://127.0.0.1:${port[$p]}/body.bin" &&
        cmp -s "$LT_TMP/$p.check-body" "$LT_TMP/www/body.bin" ||
        lt_die "$p on port ${port[$p]}: /body.bin did not come back byte-exact"
    lt_log "$p on 127.0.0.1:${port[$p]} (pid ${LT_PROXY_PID[$p]}, core $LT_PROXY_CPU)"
done

wrk_cmd() { # PORT SECONDS
    echo "taskset -c $LT_LOAD_CPU wrk -t1 -c$CONNS -d${2}s http://127.0.0.1:$1/body.bin"
}

declare -A cpu=() sum=() gbps=() errs=()
runs_md=""
# one_run ROUND PROXY
one_run() {
    local r=$1 p=$2 pid out c0 c1 b0 b1 req e gb s t rate kv
    pid=${LT_PROXY_PID[$p]}
    if lt_proxy_gone "$p" "is gone"; then lt_die "$p stopped the run"; fi
    out="$LT_TMP/wrk-$p-$r.txt"
    c0=$(lt_cpu_ns "$pid"); b0=$(lt_cpu_ns "$LT_BACKEND_PID")
    # shellcheck disable=SC2046
    lt_run_bg $(wrk_cmd "${port[$p]}" "$DURATION") >"$out"
    sleep 0.2
    c1=$(lt_cpu_ns "$pid"); b1=$(lt_cpu_ns "$LT_BACKEND_PID")
    read -r req _ _ _ e < <(lt_wrk_parse "$out")
    ((req > 0)) || lt_die "$p completed no requests (see $out)"
    # Bodies only: heads are a rounding error at 1 MiB. GB = 10^9 bytes.
    gb=$(awk -v n="$req" -v k="$SIZE_KB" 'BEGIN { printf "%.6f", n * k * 1024 / 1e9 }')
    s=$(awk -v a="$c0" -v b="$c1" -v g="$gb" 'BEGIN { printf "%.3f", (b - a) / 1e9 / g }')
    t=$(awk -v a="$c0" -v b="$c1" -v x="$b0" -v y="$b1" -v g="$gb" 'BEGIN { printf "%.3f", ((b - a) + (y - x)) / 1e9 / g }')
    rate=$(awk -v g="$gb" -v d="$DURATION" 'BEGIN { printf "%.2f", g / d }')
    cpu[$p]+=" $s"; sum[$p]+=" $t"; gbps[$p]+=" $rate"
    errs[$p]=$((${errs[$p]:-0} + e))
    lt_log "round $r/$ROUNDS $p: $rate GB/s, proxy $s CPU-s/GB, proxy+backend $t, errors $e"
    for kv in "proxy_cpu_s_per_gb $s" "proxy_and_backend_cpu_s_per_gb $t" "gb_per_second $rate"; do
        lt_csv_row "$r" "$p" $kv
    done
    runs_md+="| $r | $p | $req | $rate | $s | $t | $e |"$'\n'
}
lt_rounds one_run

nginx_cpu="" nginx_sum=""
if [[ -n ${cpu[nginx]:-} ]]; then
    nginx_cpu=$(lt_median ${cpu[nginx]}); nginx_sum=$(lt_median ${sum[nginx]})
fi
report() {
    echo "### ${SIZE_KB} KiB responses (medians of $ROUNDS round(s) x ${DURATION}s, $CONNS connections)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "| proxy | GB/s | proxy CPU s/GB | vs nginx | proxy + backend CPU s/GB | vs nginx | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for p in "${proxies[@]}"; do
        local c t
        c=$(lt_median ${cpu[$p]}); t=$(lt_median ${sum[$p]})
        printf '| %s | %.2f | %.3f | %s | %.3f | %s | %s |\n' "$p" "$(lt_median ${gbps[$p]})" "$c" \
            "$(lt_ratio "$c" "$nginx_cpu")" "$t" "$(lt_ratio "$t" "$nginx_sum")" "${errs[$p]}"
    done
    echo
    lt_paired "Proxy CPU per GB" cpu "${proxies[@]}"
    echo "Each run: \`$(wrk_cmd PORT "$DURATION")\`; proxies pinned to core $LT_PROXY_CPU with one worker,"
    echo "backend nginx (sendfile) and wrk on core $LT_LOAD_CPU. CPU = /proc/PID/task/*/schedstat field 1,"
    echo "after - before, / GB of bodies relayed (10^9 bytes). errors = non-2xx + socket errors, all rounds."
    lt_machine_info
    echo
    echo "<details><summary>every run</summary>"
    echo
    echo "| round | proxy | responses | GB/s | proxy CPU s/GB | proxy + backend | errors |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    printf '%s' "$runs_md"
    echo
    echo "</details>"
}
outfile="$LT_OUT/body-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
