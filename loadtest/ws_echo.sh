#!/usr/bin/env bash
# WebSocket relay cost: ringway vs nginx vs HAProxy (one worker each, pinned to core 0) in front
# of the same echo backend, loaded by many upgraded connections sending small frames. Reports
# the proxy's CPU per relayed message (a message = one frame to the backend and its echo back),
# with the ratio to nginx, and the backend's CPU per message (loopback charges receive work to
# the sender, so compare the sum too).
#
#   loadtest/ws_echo.sh                        # 3 rounds x 3 proxies x 10 s, 64 connections
#   DURATION=3 ROUNDS=1 loadtest/ws_echo.sh    # quick look
#
# Env: DURATION (s, 10), ROUNDS (3), CONNS (64), SIZE (payload bytes per frame, 32), WINDOW (frames
#      in flight per connection, 4), THREADS (client threads, 2), PROXIES, RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SIZE=${SIZE:-32}
WINDOW=${WINDOW:-4}
THREADS=${THREADS:-2}
LT_DEFAULT_PROXIES="nginx haproxy ringway"
PROXIES=${PROXIES:-$LT_DEFAULT_PROXIES}
read -r -a proxies <<<"$PROXIES"
lt_counts --positive DURATION ROUNDS CONNS SIZE WINDOW THREADS
lt_check_proxies "$PROXIES"

cmdline="DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS SIZE=$SIZE WINDOW=$WINDOW THREADS=$THREADS $(lt_cmdline_env)loadtest/ws_echo.sh"

lt_require_tools nginx haproxy
[[ " $PROXIES " == *" ringway "* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
size_name=${SIZE}b
((SIZE % 1024 == 0)) && size_name=$((SIZE / 1024))k
lt_csv_open "ws-echo-$size_name-cpu" "$cmdline"
bench=$(lt_build_tool wsbench)

lt_free_port backend
lt_spawn ws-echo "$LT_LOAD_CPU" "$bench" server "$backend"
backend_pid=$LT_LAST_PID
lt_wait_ready ws-echo "$backend_pid" "$backend"

declare -A port=()
for p in "${proxies[@]}"; do
    lt_free_port "port[$p]"
    lt_ws_proxy "$p" "${port[$p]}" "$backend"
    # Fails early if the proxy does not carry the upgrade and the echo intact.
    lt_run_bg taskset -c "$LT_LOAD_CPU" "$bench" client "${port[$p]}" 2 1 "$SIZE" 1 1 >/dev/null ||
        lt_die "$p on port ${port[$p]}: WebSocket echo check failed"
    lt_log "$p on 127.0.0.1:${port[$p]} (pid ${LT_PROXY_PID[$p]}, core $LT_PROXY_CPU)"
done

declare -A cpu=() bcpu=() rate=()
runs_md=""
# one_run ROUND PROXY
one_run() {
    local r=$1 p=$2 pid out c0 c1 b0 b1 msgs secs ns bns mps kv
    pid=${LT_PROXY_PID[$p]}
    if lt_proxy_gone "$p" "is gone"; then lt_die "$p stopped the run"; fi
    out="$LT_TMP/echo-$p-$r.txt"
    c0=$(lt_cpu_ns "$pid"); b0=$(lt_cpu_ns_total "$backend_pid")
    lt_run_bg taskset -c "$LT_LOAD_CPU" "$bench" client "${port[$p]}" "$CONNS" "$DURATION" "$SIZE" "$WINDOW" "$THREADS" >"$out" ||
        lt_die "$p: echo client failed (see $out)"
    # The client closed its connections: let the proxy finish tearing the tunnels down.
    sleep 0.2
    c1=$(lt_cpu_ns "$pid"); b1=$(lt_cpu_ns_total "$backend_pid")
    msgs=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' "$out")
    secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$out")
    [[ -n $msgs ]] && ((msgs > 0)) || lt_die "$p relayed no messages (see $out)"
    ns=$(awk -v a="$c0" -v b="$c1" -v m="$msgs" 'BEGIN { printf "%.0f", (b - a) / m }')
    bns=$(awk -v a="$b0" -v b="$b1" -v m="$msgs" 'BEGIN { printf "%.0f", (b - a) / m }')
    mps=$(awk -v m="$msgs" -v s="$secs" 'BEGIN { printf "%.0f", m / s }')
    cpu[$p]+=" $ns"; bcpu[$p]+=" $bns"; rate[$p]+=" $mps"
    lt_log "round $r/$ROUNDS $p: $mps messages/s, $ns ns proxy CPU/message, backend $bns ns"
    for kv in "proxy_cpu_ns_per_message $ns" "backend_cpu_ns_per_message $bns" "messages_per_second $mps"; do
        lt_csv_row "$r" "$p" $kv
    done
    runs_md+="| $r | $p | $msgs | $mps | $ns | $bns |"$'\n'
}
lt_rounds one_run

nginx_cpu="" nginx_sum=""
if [[ -n ${cpu[nginx]:-} ]]; then
    nginx_cpu=$(lt_median ${cpu[nginx]})
    nginx_sum=$(awk -v a="$nginx_cpu" -v b="$(lt_median ${bcpu[nginx]})" 'BEGIN { print a + b }')
fi
report() {
    echo "### WebSocket echo, $SIZE-byte frames (medians of $ROUNDS round(s) x ${DURATION}s, $CONNS connections)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "| proxy | messages/s | proxy CPU ns/message | vs nginx | backend ns/message | proxy + backend | vs nginx |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for p in "${proxies[@]}"; do
        local c b sum
        c=$(lt_median ${cpu[$p]}); b=$(lt_median ${bcpu[$p]})
        sum=$(awk -v a="$c" -v b="$b" 'BEGIN { print a + b }')
        printf '| %s | %.0f | %.0f | %s | %.0f | %.0f | %s |\n' "$p" "$(lt_median ${rate[$p]})" "$c" \
            "$(lt_ratio "$c" "$nginx_cpu")" "$b" "$sum" "$(lt_ratio "$sum" "$nginx_sum")"
    done
    echo
    lt_paired "Proxy CPU per message" cpu "${proxies[@]}"
    echo "A message is one $SIZE-byte binary frame client → backend plus its echo back; the client keeps"
    echo "$WINDOW frames in flight per connection ($THREADS threads, \`tools/wsbench.rs\`) and checks every echo."
    echo "Proxies pinned to core $LT_PROXY_CPU with one worker; backend (\`wsbench server\`) and client on core"
    echo "$LT_LOAD_CPU. Proxy CPU = /proc/PID/task/*/schedstat field 1, after - before, / messages; backend CPU from"
    echo "/proc/PID/stat utime + stime (its per-connection threads exit before the second reading)."
    lt_machine_info
    echo
    echo "<details><summary>every run</summary>"
    echo
    echo "| round | proxy | messages | messages/s | proxy ns/message | backend ns/message |"
    echo "|---:|---|---:|---:|---:|---:|"
    printf '%s' "$runs_md"
    echo
    echo "</details>"
}
outfile="$LT_OUT/ws-echo-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
