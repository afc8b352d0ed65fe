#!/usr/bin/env bash
# Idle WebSocket cost: N upgraded connections held open through ringway, nginx and HAProxy (one
# worker each, pinned to core 0) in front of the same upgrade backend. Reports the proxy's RSS
# growth per idle connection, fds per connection, and its thread count before and after.
#
#   loadtest/ws_idle.sh               # N=4000 per proxy
#   N=9900 PROXIES=ringway loadtest/ws_idle.sh   # the fd ceiling of this machine (20000 per process)
#
# Env: N (4000), PROXIES ("nginx haproxy ringway"), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-4000}
PROXIES=${PROXIES:-nginx haproxy ringway}
read -r -a proxies <<<"$PROXIES"
[[ $N =~ ^[0-9]+$ ]] || lt_die "N must be a whole number"
cmdline="N=$N"
[[ $PROXIES != "nginx haproxy ringway" ]] && cmdline+=" PROXIES=\"$PROXIES\""
cmdline+=" loadtest/ws_idle.sh"

lt_require_tools nginx haproxy python3
[[ " $PROXIES " == *" ringway "* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open ws-idle-memory "$cmdline"
# Client sockets of the test live in this shell's children: they need fds too.
ulimit -n 20000 2>/dev/null || true

lt_free_port backend
lt_spawn ws-backend "$LT_LOAD_CPU" python3 "$LT_DIR/tools/ws_upstream.py" "$backend"
lt_wait_ready ws-backend "$LT_LAST_PID" "$backend"

declare -A result
for p in "${proxies[@]}"; do
    lt_free_port port
    lt_ws_proxy "$p" "$port" "$backend"
    pids=$(lt_proc_tree "${LT_PROXY_PID[$p]}" | paste -sd, -)
    lt_log "$p: opening $N idle WebSockets"
    result[$p]=$(taskset -c "$LT_LOAD_CPU" python3 "$LT_DIR/tools/ws_idle_client.py" "$N" "${LT_PROXY_PID[$p]}" "$port" "$pids")
    lt_log "$p: ${result[$p]}"
    kill -TERM $(lt_proc_tree "${LT_PROXY_PID[$p]}") 2>/dev/null || true
    sleep 1
done

field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }
table="| proxy | idle WebSockets opened | failed | RSS growth per connection | fds per connection | threads before -> after |
|---|---:|---:|---:|---:|---|"
for p in "${proxies[@]}"; do
    r=${result[$p]}
    lt_csv_row 1 "$p" rss_bytes_per_connection "$(( $(field "$r" rss_per_conn_bytes) ))"
    lt_csv_row 1 "$p" fds_per_connection "$(field "$r" fds_per_conn)"
    lt_csv_row 1 "$p" failed "$(field "$r" failed)"
    table+="
| $p | $(field "$r" opened) | $(field "$r" failed) | $(( $(field "$r" rss_per_conn_bytes) )) B | $(field "$r" fds_per_conn) | $(field "$r" threads) |"
done
out="$LT_OUT/ws-idle-$(date +%Y%m%d-%H%M%S).md"
printf '%s\n\ncommand: `%s`\n' "$table" "$cmdline" | tee "$out"
