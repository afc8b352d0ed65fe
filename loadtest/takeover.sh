#!/usr/bin/env bash
# Restarts under keep-alive load: wrk with CONNS keep-alive connections runs while ringway is
# replaced TAKEOVERS times (`ringway --takeover`), and, in the same run, while nginx is reloaded
# as often (SIGHUP). Prints each one's requests, socket errors (connect, read, write, timeout)
# and non-2xx responses, and writes the table to loadtest/out/takeover-<date>.md.
#
#   loadtest/takeover.sh                         # 32 connections, 3 restarts, 2 s apart
#   CONNS=64 TAKEOVERS=5 loadtest/takeover.sh
#
# Env: CONNS (32), TAKEOVERS (3), GAP (s between restarts, 2), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${CONNS:-32}
TAKEOVERS=${TAKEOVERS:-3}
GAP=${GAP:-2}
for v in CONNS TAKEOVERS GAP; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || lt_die "$v must be a whole number above 0, got '${!v}'"
done
DURATION=$(((TAKEOVERS + 1) * GAP + 1))
cmdline="CONNS=$CONNS TAKEOVERS=$TAKEOVERS GAP=$GAP loadtest/takeover.sh"

lt_require_tools nginx wrk curl
LT_RINGWAY=$(lt_ringway_bin)
lt_init

lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        default_type text/plain;
        location / { return 200 \"ok\"; }"

# ringway with a control socket, so a successor can take its listeners over.
lt_free_port ringway_port
control="$LT_TMP/ringway.sock"
LT_RINGWAY_SERVER="control_socket = \"$control\"
shutdown_timeout = \"10s\""
lt_start_proxy ringway "$ringway_port" "$backend_port"
lt_free_port nginx_port
lt_start_proxy nginx "$nginx_port" "$backend_port"

# wrk PORT OUT: keep-alive load for DURATION seconds, in the background; sets WRK_PID.
start_wrk() {
    taskset -c "$LT_LOAD_CPU" wrk -t2 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$1/" >"$2" 2>&1 &
    WRK_PID=$!
    LT_PIDS+=("$WRK_PID")
}

# --- ringway: TAKEOVERS successive takeovers --------------------------------------------------
out_r="$LT_TMP/wrk-ringway.txt"
start_wrk "$ringway_port" "$out_r"
for ((i = 1; i <= TAKEOVERS; i++)); do
    sleep "$GAP"
    lt_log "ringway takeover $i/$TAKEOVERS"
    lt_spawn "ringway-$i" "$LT_PROXY_CPU" "$LT_RINGWAY" --config "$LT_TMP/ringway.toml" --takeover "$control"
    for _ in $(seq 200); do
        grep -q '^ringway: ready' "$LT_TMP/ringway-$i.log" && break
        sleep 0.05
    done
    grep -q '^ringway: ready' "$LT_TMP/ringway-$i.log" || lt_die "takeover $i did not become ready"
done
wait "$WRK_PID" || true

# --- nginx: TAKEOVERS reloads ----------------------------------------------------------------
out_n="$LT_TMP/wrk-nginx.txt"
start_wrk "$nginx_port" "$out_n"
for ((i = 1; i <= TAKEOVERS; i++)); do
    sleep "$GAP"
    lt_log "nginx reload $i/$TAKEOVERS"
    kill -HUP "${LT_PROXY_PID[nginx]}"
done
wait "$WRK_PID" || true

row() { # NAME WRK_OUTPUT WHAT
    local req socket non2xx
    req=$(awk '/requests in/ { print $1; exit }' "$2")
    socket=$(awk '/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i + 0 } END { print s + 0 }' "$2")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF; exit }' "$2")
    echo "| $1 | $3 | ${req:-0} | $socket | ${non2xx:-0} |"
}
report() {
    echo "### Restarts under keep-alive load ($CONNS connections, $TAKEOVERS restarts ${GAP}s apart)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "| proxy | restarts | requests | socket errors | non-2xx |"
    echo "|---|---|---:|---:|---:|"
    row ringway "$out_r" "$TAKEOVERS × \`ringway --takeover\`"
    row nginx "$out_n" "$TAKEOVERS × SIGHUP (reload)"
    echo
    echo "wrk: \`wrk -t2 -c$CONNS -d${DURATION}s\` on core $LT_LOAD_CPU; proxies with one worker on core $LT_PROXY_CPU,"
    echo "nginx backend answering \`ok\`. Socket errors are wrk's connect, read, write and timeout counts."
    lt_machine_info
    echo
    echo "<details><summary>wrk output</summary>"
    echo
    echo '```'
    cat "$out_r" "$out_n"
    echo '```'
    echo
    echo "</details>"
}
outfile="$LT_OUT/takeover-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
