#!/usr/bin/env bash
# Idle keep-alive client connections: N connections through ringway, nginx and HAProxy (one
# worker each, pinned to core 0) in front of the same nginx backend, each served one small
# request and then left idle. Reports the proxy's RSS growth per idle connection, then closes
# them all at once and follows the proxy's RSS every 0.5 s for 15 s: the base before the burst,
# the peak, the RSS 10 s after closing, and when it first came back within 25% of the base.
# Mode h2: TLS with ALPN h2 (nginx `listen ... ssl http2`, HAProxy `alpn h2,http/1.1`, ringway's
# default), one GET stream per connection, then the HTTP/2 connection is left idle.
#
#   loadtest/idle.sh                      # plain N=4000, TLS 1.3 N=3000 (ECDSA P-256), h2 N=3000
#   MODES=plain PROXIES=ringway loadtest/idle.sh
#
# Env: MODES ("plain tls h2"), N_PLAIN (4000), N_TLS (3000), N_H2 (3000), PROXIES ("nginx haproxy ringway";
# also ringway_base: the build in RINGWAY_BASE_BIN), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODES=${MODES:-plain tls h2}
N_PLAIN=${N_PLAIN:-4000}
N_TLS=${N_TLS:-3000}
N_H2=${N_H2:-3000}
PROXIES=${PROXIES:-nginx haproxy ringway}
read -r -a proxies <<<"$PROXIES"
read -r -a modes <<<"$MODES"
for v in N_PLAIN N_TLS N_H2; do [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number"; done
for m in "${modes[@]}"; do [[ $m == plain || $m == tls || $m == h2 ]] || lt_die "unknown mode '$m'"; done
lt_check_proxies "$PROXIES"
cmdline=""
[[ $MODES != "plain tls h2" ]] && cmdline+="MODES=\"$MODES\" "
[[ $N_PLAIN != 4000 ]] && cmdline+="N_PLAIN=$N_PLAIN "
[[ $N_TLS != 3000 ]] && cmdline+="N_TLS=$N_TLS "
[[ $N_H2 != 3000 ]] && cmdline+="N_H2=$N_H2 "
[[ $PROXIES != "nginx haproxy ringway" ]] && cmdline+="PROXIES=\"$PROXIES\" "
[[ -n ${RINGWAY_BASE_BIN:-} ]] && cmdline+="RINGWAY_BASE_BIN=$RINGWAY_BASE_BIN "
cmdline+="loadtest/idle.sh"

lt_require_tools nginx haproxy python3 openssl
[[ " $PROXIES " == *" ringway"* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open idle-keepalive-memory "$cmdline"
# The client's sockets live in this shell's children: they need fds too.
ulimit -n 20000 2>/dev/null || true

lt_free_port backend
lt_start_backend_nginx "$backend" '
        default_type text/plain;
        location / { return 200 "idle"; }'
lt_tls_cert "$LT_TMP/tls"

declare -A result
for mode in "${modes[@]}"; do
    n=$N_PLAIN
    LT_TLS_DIR=""
    LT_NGINX_LISTEN=""
    LT_HAPROXY_BIND=""
    if [[ $mode == tls ]]; then
        n=$N_TLS
        LT_TLS_DIR="$LT_TMP/tls"
    elif [[ $mode == h2 ]]; then
        n=$N_H2
        LT_TLS_DIR="$LT_TMP/tls"
        LT_NGINX_LISTEN=" http2"
        LT_HAPROXY_BIND="alpn h2,http/1.1"
    fi
    for p in "${proxies[@]}"; do
        lt_free_port port
        lt_start_proxy "$p" "$port" "$backend"
        pids=$(lt_proc_tree "${LT_PROXY_PID[$p]}" | paste -sd, -)
        lt_log "$p $mode: $n idle keep-alive connections"
        result[$mode.$p]=$(taskset -c "$LT_LOAD_CPU" python3 "$LT_DIR/tools/idle_client.py" "$n" "$port" "$pids" "$mode")
        lt_log "$p $mode: ${result[$mode.$p]% after_kb=*}"
        kill -TERM $(lt_proc_tree "${LT_PROXY_PID[$p]}") 2>/dev/null || true
        sleep 1
    done
done

field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }
# back_within BASE SAMPLES: seconds after closing until RSS first was at most 1.25 x BASE.
back_within() {
    awk -v b="$1" -v s="$2" 'BEGIN { n = split(s, a, ","); for (i = 1; i <= n; i++) if (a[i] <= b * 1.25) { printf "%.1f s\n", (i - 1) * 0.5; exit } print "not in 15 s" }'
}
table="| mode | proxy | idle connections | failed | RSS growth per connection | RSS base → peak | RSS 10 s after closing | back within 25% of base |
|---|---|---:|---:|---:|---|---:|---|"
series=""
for mode in "${modes[@]}"; do
    for p in "${proxies[@]}"; do
        r=${result[$mode.$p]}
        base=$(field "$r" base_kb)
        after=$(field "$r" after_kb)
        at10=$(cut -d, -f21 <<<"$after")
        lt_csv_row 1 "$p" "${mode}_rss_bytes_per_connection" "$(field "$r" rss_per_conn_bytes)"
        lt_csv_row 1 "$p" "${mode}_rss_kb_10s_after" "$at10"
        table+="
| $mode | $p | $(field "$r" opened) | $(field "$r" failed) | $(field "$r" rss_per_conn_bytes) B | $base → $(field "$r" peak_kb) KiB | $at10 KiB | $(back_within "$base" "$after") |"
        series+="- $mode $p (KiB, every 0.5 s after closing): $after"$'\n'
    done
done
out="$LT_OUT/idle-$(date +%Y%m%d-%H%M%S).md"
printf '%s\n\nRSS after closing:\n%s\n%s\ncommand: `%s`\n' "$table" "$series" "$(lt_machine_info)" "$cmdline" | tee "$out"
