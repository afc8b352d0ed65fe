#!/usr/bin/env bash
# HTTP/2 towards clients: proxy CPU per request for ringway, nginx (`listen ... ssl http2`, the
# 1.22 spelling of `http2 on`), HAProxy (`alpn h2,http/1.1`) and Caddy when installed, each with
# one worker pinned to core 0, the same ECDSA P-256 certificate, TLS 1.3, in front of the same
# plain HTTP/1.1 nginx backend (100-byte body) on core 1, loaded by h2load on core 1 with
# CONNS connections x STREAMS concurrent streams. Proxies run back to back in each round
# (rotated), so ratios to nginx are paired by round.
#
# With 16 x 32 = 512 streams in flight, each proxy holds up to 512 upstream requests at once:
# the upstream keep-alive pools are sized for that (nginx `keepalive 512`, ringway
# `keepalive = 512`); with smaller pools the surplus connections are opened and closed per
# request and that cost dominates.
#
#   loadtest/h2.sh
#   DURATION=5 ROUNDS=1 loadtest/h2.sh      # smoke run
#
# Env: DURATION (s, 10), ROUNDS (3), CONNS (16), STREAMS (32), WARMUP (s, 2), PROXIES
#      ("nginx haproxy ringway caddy", caddy skipped when absent), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
STREAMS=${STREAMS:-32}
WARMUP=${WARMUP:-2}
LT_DEFAULT_PROXIES="nginx haproxy ringway caddy"
PROXIES=${PROXIES:-$LT_DEFAULT_PROXIES}
lt_counts --positive DURATION ROUNDS CONNS STREAMS
lt_counts WARMUP
read -r -a wanted <<<"$PROXIES"
proxies=()
for p in "${wanted[@]}"; do
    case $p in
    nginx | haproxy | ringway) proxies+=("$p") ;;
    caddy) if command -v caddy >/dev/null; then proxies+=(caddy); else lt_log "caddy not installed; skipped"; fi ;;
    *) lt_die "unknown proxy '$p' in PROXIES" ;;
    esac
done

cmdline="DURATION=$DURATION ROUNDS=$ROUNDS"
[[ $CONNS != 16 ]] && cmdline+=" CONNS=$CONNS"
[[ $STREAMS != 32 ]] && cmdline+=" STREAMS=$STREAMS"
cmdline+=" $(lt_cmdline_env)loadtest/h2.sh"

lt_require_tools nginx haproxy h2load curl openssl
[[ " ${proxies[*]} " == *" ringway "* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open h2-cpu "$cmdline"
lt_tls_cert "$LT_TMP/cert"

BODY=$(printf 'ringway-loadtest-%083d' 0)
lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        keepalive_requests 10000000;
        default_type text/plain;
        location / { return 200 \"$BODY\"; }"

lt_start_proxy_caddy() {
    local port=$1 backend=$2 cfg="$LT_TMP/Caddyfile"
    cat >"$cfg" <<EOF
{
    admin off
    auto_https off
    servers {
        protocols h1 h2
    }
}
https://127.0.0.1:$port {
    tls $LT_TLS_DIR/cert.pem $LT_TLS_DIR/key.pem
    reverse_proxy 127.0.0.1:$backend {
        transport http {
            keepalive_idle_conns 512
            keepalive_idle_conns_per_host 512
        }
    }
}
EOF
    # One OS thread for Go's scheduler: the same one core the others get.
    GOMAXPROCS=1 lt_spawn caddy "$LT_PROXY_CPU" caddy run --config "$cfg" --adapter caddyfile
    lt_wait_ready caddy "$LT_LAST_PID" "$port"
}

LT_TLS_DIR="$LT_TMP/cert"
export LT_NGINX_LISTEN=" http2" LT_NGINX_KEEPALIVE=512 LT_HAPROXY_BIND="alpn h2,http/1.1"
export LT_RINGWAY_UPSTREAM="keepalive = 512"
declare -A port=()
for p in "${proxies[@]}"; do
    lt_free_port "port[$p]"
    if [[ $p == caddy ]]; then
        lt_start_proxy_caddy "${port[$p]}" "$backend_port"
        LT_PROXY_PID[caddy]=$LT_LAST_PID
    else
        lt_start_proxy "$p" "${port[$p]}" "$backend_port"
    fi
    got=$(curl -sS -k --http2 --max-time 5 -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:${port[$p]}/") || true
    [[ $got == "2 200" ]] || lt_die "$p on port ${port[$p]}: expected HTTP/2 200, got '$got'"
    lt_log "$p on https://127.0.0.1:${port[$p]} (pid ${LT_PROXY_PID[$p]}, HTTP/2)"
done

h2load_cmd() { # PORT SECONDS
    echo taskset -c "$LT_LOAD_CPU" h2load -c "$CONNS" -m "$STREAMS" -t 1 -D "$2" "https://127.0.0.1:$1/"
}

if ((WARMUP > 0)); then
    for p in "${proxies[@]}"; do
        $(h2load_cmd "${port[$p]}" "$WARMUP") >/dev/null 2>&1 || true
    done
fi

declare -A cpu=() rps=() fails=()
runs_md=""
# one_run ROUND PROXY
one_run() {
    local r=$1 p=$2 pid out c0 c1 ok bad rs us
    pid=${LT_PROXY_PID[$p]}
    out="$LT_TMP/h2load-$p-$r.txt"
    c0=$(lt_cpu_ns "$pid")
    $(h2load_cmd "${port[$p]}" "$DURATION") >"$out" 2>&1 || true
    sleep 0.2
    c1=$(lt_cpu_ns "$pid")
    ok=$(awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^succeeded/) print $i }' "$out" | tr -d ,)
    bad=$(awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) print $i }' "$out" | tr -d ,)
    rs=$(awk '/^finished in/ { print $4 }' "$out")
    ((${ok:-0} > 0)) || lt_die "$p completed no requests (see $out)"
    us=$(awk -v a="$c0" -v b="$c1" -v n="$ok" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')
    cpu[$p]+=" $us"
    rps[$p]+=" $rs"
    fails[$p]=$((${fails[$p]:-0} + ${bad:-0}))
    lt_csv_row "$r" "$p" cpu_us_per_request "$us"
    lt_log "round $r/$ROUNDS $p: $ok requests, $rs req/s, $us µs CPU/req, failed ${bad:-0}"
    runs_md+="| $r | $p | $ok | $rs | $us | ${bad:-0} |"$'\n'
}
lt_rounds one_run

report() {
    echo "### HTTP/2 over TLS 1.3, $CONNS connections x $STREAMS streams, 100-byte responses (medians of $ROUNDS x ${DURATION}s)"
    echo
    echo "| proxy | CPU µs/request | vs nginx | requests/s | failed |"
    echo "|---|---:|---:|---:|---:|"
    local base m
    base=$(lt_median ${cpu[nginx]:-})
    for p in "${proxies[@]}"; do
        m=$(lt_median ${cpu[$p]})
        echo "| $p | $m | $(awk -v a="$m" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "—" }') | $(lt_median ${rps[$p]}) | ${fails[$p]} |"
    done
    echo
    lt_paired "CPU per request" cpu "${proxies[@]}"
    echo "Each run: \`$(h2load_cmd PORT "$DURATION")\`; proxy CPU from /proc/PID/task/*/schedstat."
    echo
    echo "| round | proxy | requests | req/s | CPU µs/req | failed |"
    echo "|---|---|---:|---:|---:|---:|"
    printf '%s' "$runs_md"
    echo
    lt_machine_info
}
out_md="$LT_OUT/h2-$(date +%Y-%m-%d).md"
{
    echo "Command: \`$cmdline\`"
    echo
    report
} | tee "$out_md"
lt_log "written to $out_md"
