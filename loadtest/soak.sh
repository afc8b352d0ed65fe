#!/usr/bin/env bash
# Soak: ringway under mixed load for DURATION seconds — keep-alive requests (wrk), new
# connections, WebSocket churn (the ws_idle client, reopened again and again), slowloris
# connections, and clients aborting mid-download and mid-upload — sampling the proxy's RSS, open
# fds and threads every INTERVAL seconds into a CSV. After warm-up both must stay flat; a last
# sample after the load stops shows the fds coming back.
#
#   loadtest/soak.sh                      # 600 s
#   DURATION=30 loadtest/soak.sh          # smoke run
#
# Env: DURATION (600), INTERVAL (5), WARMUP (10% of DURATION), KA_CONNS (32, wrk), NEWCONN (8),
# SLOWLORIS (200), ABORTERS (4), WS (200 per round), WS_HOLD (10 s), HEADER_TIMEOUT (5s),
# RINGWAY_BIN, KEEP_TMP. Output: loadtest/out/soak-*.csv and a markdown summary (.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-5}
WARMUP=${WARMUP:-$((DURATION / 10))}
KA_CONNS=${KA_CONNS:-32}
NEWCONN=${NEWCONN:-8}
SLOWLORIS=${SLOWLORIS:-200}
ABORTERS=${ABORTERS:-4}
WS=${WS:-200}
WS_HOLD=${WS_HOLD:-10}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-5s}
for v in DURATION INTERVAL WARMUP KA_CONNS NEWCONN SLOWLORIS ABORTERS WS WS_HOLD; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number"
done
cmdline="DURATION=$DURATION loadtest/soak.sh"

lt_require_tools nginx wrk python3
LT_RINGWAY=$(lt_ringway_bin)
lt_init
ulimit -n 20000 2>/dev/null || true

# Backends on the load core: nginx for HTTP (a small answer, an 8 MiB file to abort in the
# middle of, and uploads it discards), the Python upgrade backend for WebSockets.
mkdir -p "$LT_TMP/www"
head -c $((8 * 1024 * 1024)) /dev/zero >"$LT_TMP/www/big"
lt_free_port backend
lt_start_backend_nginx "$backend" "
        client_max_body_size 0;
        location = /big { root $LT_TMP/www; }
        location / { return 200 \"soak\\n\"; }"
lt_free_port ws_backend
lt_spawn ws-backend "$LT_LOAD_CPU" python3 "$LT_DIR/tools/ws_upstream.py" "$ws_backend"
lt_wait_ready ws-backend "$LT_LAST_PID" "$ws_backend"

lt_free_port port
cat >"$LT_TMP/ringway.toml" <<EOF
[server]
workers = 1
header_timeout = "$HEADER_TIMEOUT"

[[listener]]
bind = "127.0.0.1:$port"

[upstream.backend]
servers = ["127.0.0.1:$backend"]

[upstream.ws]
servers = ["127.0.0.1:$ws_backend"]

[[route]]
prefix = "/ws"
upstream = "ws"

[[route]]
prefix = "/"
upstream = "backend"
EOF
lt_spawn ringway "$LT_PROXY_CPU" "$LT_RINGWAY" --config "$LT_TMP/ringway.toml"
pid=$LT_LAST_PID
lt_wait_ready ringway "$pid" "$port"

stamp=$(date +%Y%m%d-%H%M%S)
csv="$LT_OUT/soak-$stamp.csv"
sample() { # t phase
    local rss fds thr
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    thr=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l)
    echo "$1,$2,$rss,$fds,$thr" >>"$csv"
}
echo "t_s,phase,rss_kib,fds,threads" >"$csv"
sample 0 idle

lt_log "soak: ${DURATION}s of mixed load against ringway (pid $pid, port $port)"
start=$SECONDS
load_pids=()
taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$KA_CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/keepalive" \
    >"$LT_TMP/wrk.txt" 2>&1 &
load_pids+=($!)
taskset -c "$LT_LOAD_CPU" python3 "$LT_DIR/tools/soak_clients.py" "$port" "$DURATION" \
    "$NEWCONN" "$SLOWLORIS" "$ABORTERS" >"$LT_TMP/clients.txt" 2>&1 &
load_pids+=($!)
# WebSocket churn: open WS idle tunnels, hold them WS_HOLD s, close, again until the end.
(
    end=$((SECONDS + DURATION))
    while ((SECONDS + WS_HOLD < end)); do
        SETTLE=$WS_HOLD taskset -c "$LT_LOAD_CPU" python3 "$LT_DIR/tools/ws_idle_client.py" \
            "$WS" "$pid" "$port" >>"$LT_TMP/ws.txt" 2>&1 || echo "ws round failed" >>"$LT_TMP/ws.txt"
    done
) &
load_pids+=($!)
LT_PIDS+=("${load_pids[@]}")

while (( SECONDS - start < DURATION )); do
    sleep "$INTERVAL"
    kill -0 "$pid" 2>/dev/null || lt_die "ringway exited during the soak; log: $(tail -n 5 "$LT_TMP/ringway.log")"
    t=$((SECONDS - start))
    phase=load
    ((t < WARMUP)) && phase=warmup
    sample "$t" "$phase"
done
for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null || true; done
# Slowloris connections still open end at header_timeout; give them that and a little more.
sleep $(( ${HEADER_TIMEOUT%s} + 3 ))
sample $((SECONDS - start)) after

read -r requests rps _ p99 errors < <(lt_wrk_parse "$LT_TMP/wrk.txt")
clients=$(cat "$LT_TMP/clients.txt")
ws_rounds=$(grep -c '^opened=' "$LT_TMP/ws.txt" || true)
ws_failed=$(awk -F'failed=' 'NF > 1 { split($2, a, " "); s += a[1] } END { print s + 0 }' "$LT_TMP/ws.txt")

# Flatness: the load is periodic (WebSocket rounds open and close), so compare peaks: the highest
# RSS and fd count in the second half of the post-warm-up samples against the first half.
summary=$(awk -F, '
    $2 == "load" { n++; rss[n] = $3; fd[n] = $4 }
    $2 == "idle" { ri = $3; fi = $4 }
    $2 == "after" { ra = $3; fa = $4 }
    END {
        h = int(n / 2)
        for (i = 1; i <= n; i++) {
            if (i <= h) { if (rss[i] > r1) r1 = rss[i]; if (fd[i] > f1) f1 = fd[i] }
            else { if (rss[i] > r2) r2 = rss[i]; if (fd[i] > f2) f2 = fd[i] }
        }
        flat = (n >= 2 && r2 <= r1 * 1.10 + 4096 && f2 <= f1 * 1.10 + 32) ? "yes" : "NO"
        printf "%d %d %d %d %d %d %d %d %s\n", ri, fi, r1, f1, r2, f2, ra, fa, flat
    }' "$csv")
read -r rss_idle fds_idle rss_h1 fds_h1 rss_h2 fds_h2 rss_after fds_after flat <<<"$summary"

md="$LT_OUT/soak-$stamp.md"
{
    echo "| | RSS (KiB) | open fds |"
    echo "|---|---:|---:|"
    echo "| idle, before load | $rss_idle | $fds_idle |"
    echo "| highest, first half after warm-up (${WARMUP}s) | $rss_h1 | $fds_h1 |"
    echo "| highest, second half | $rss_h2 | $fds_h2 |"
    echo "| after the load stopped (fds include pooled upstream connections) | $rss_after | $fds_after |"
    echo
    echo "flat after warm-up (second-half peaks within 10% + 4 MiB RSS, 10% + 32 fds of the first half's): **$flat**"
    echo
    echo "- keep-alive (wrk -c$KA_CONNS): $requests requests, $rps req/s, p99 $(lt_fmt_us "$p99"), errors $errors"
    echo "- other clients: $clients"
    echo "- WebSockets: $ws_rounds rounds of $WS idle tunnels held ${WS_HOLD}s, failed upgrades $ws_failed"
    lt_machine_info
    echo
    echo "command: \`$cmdline\`; samples every ${INTERVAL}s in \`${csv#"$LT_ROOT"/}\`"
} | tee "$md"
[[ $flat == yes ]] || exit 1
