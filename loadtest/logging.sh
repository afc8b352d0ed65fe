#!/usr/bin/env bash
# What the access log costs: the same ringway binary twice, one worker each pinned to core 0,
# one with `[log] access = "off"` and one writing the combined access log to a file (with the
# admin server scraped once a second, as Prometheus would), in front of the same nginx backend
# (100-byte body) on core 1, loaded by wrk on core 1. Prints the proxy's CPU µs per request
# for each and the ratio (target: logging on costs at most 10% more). Counters are always on,
# so both variants pay for the metrics; the difference is the access log.
#
#   loadtest/logging.sh                        # 3 rounds x 2 variants x 10 s, 64 connections
#   DURATION=3 ROUNDS=1 WARMUP=1 loadtest/logging.sh   # smoke run
#
# Env: DURATION (s, default 10), ROUNDS (3), CONNS (64), WARMUP (s per variant, 2),
#      FORMAT (combined | json), RINGWAY_BIN (skip the build), KEEP_TMP (keep configs/logs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
FORMAT=${FORMAT:-combined}
for v in DURATION ROUNDS CONNS WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && CONNS > 0)) || lt_die "DURATION, ROUNDS and CONNS must be > 0"
[[ $FORMAT == combined || $FORMAT == json ]] || lt_die "FORMAT must be combined or json"

cmdline="DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS FORMAT=$FORMAT"
[[ $WARMUP != 2 ]] && cmdline+=" WARMUP=$WARMUP"
[[ -n ${RINGWAY_BIN:-} ]] && cmdline+=" RINGWAY_BIN=$RINGWAY_BIN"
[[ -n ${MONOIO_FORCE_LEGACY_DRIVER:-} ]] && cmdline+=" MONOIO_FORCE_LEGACY_DRIVER=$MONOIO_FORCE_LEGACY_DRIVER"
cmdline+=" loadtest/logging.sh"

lt_require_tools nginx wrk curl
LT_RINGWAY=$(lt_ringway_bin)
lt_init

BODY=$(printf 'ringway-loadtest-%083d' 0)   # exactly 100 bytes
lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        default_type text/plain;
        location / { return 200 \"$BODY\"; }"
lt_log "backend nginx on 127.0.0.1:$backend_port (pid $LT_BACKEND_PID, core $LT_LOAD_CPU)"

# start_variant NAME PORT EXTRA_TOML: one ringway with its own config and log.
declare -A port=() pid=()
start_variant() {
    local name=$1 cfg="$LT_TMP/$1.toml"
    lt_free_port "port[$name]"
    cat >"$cfg" <<CONF
[server]
workers = 1

[[listener]]
bind = "127.0.0.1:${port[$name]}"

[upstream.backend]
servers = ["127.0.0.1:$backend_port"]

[[route]]
prefix = "/"
upstream = "backend"

$2
CONF
    lt_spawn "$name" "$LT_PROXY_CPU" "$LT_RINGWAY" --config "$cfg"
    pid[$name]=$LT_LAST_PID
    lt_wait_ready "$name" "$LT_LAST_PID" "${port[$name]}"
    got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$name]}/") || true
    [[ $got == 200 ]] || lt_die "$name: expected 200, got '$got'"
    lt_log "$name on 127.0.0.1:${port[$name]} (pid ${pid[$name]}, core $LT_PROXY_CPU)"
}
lt_free_port admin_port
start_variant log_off "[log]
access = \"off\""
start_variant log_on "[log]
access = \"$LT_TMP/access.log\"
format = \"$FORMAT\"
[admin]
bind = \"127.0.0.1:$admin_port\""
variants=(log_off log_on)

wrk_cmd() { echo "taskset -c $LT_LOAD_CPU wrk -t1 -c$CONNS -d${2}s --latency http://127.0.0.1:$1/"; }

# A scraper like Prometheus's (every second) against the logging variant, for the whole run.
( while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$admin_port/metrics" || true; done ) &
LT_PIDS+=("$!")

if ((WARMUP > 0)); then
    for v in "${variants[@]}"; do
        # shellcheck disable=SC2046
        lt_run_bg $(wrk_cmd "${port[$v]}" "$WARMUP") >/dev/null
    done
fi

declare -A cpu=() rps=()
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < 2; i++)); do
        v=${variants[$(((i + r) % 2))]}
        out="$LT_TMP/wrk-$v-$r.txt"
        c0=$(lt_cpu_ns "${pid[$v]}")
        # shellcheck disable=SC2046
        lt_run_bg $(wrk_cmd "${port[$v]}" "$DURATION") >"$out"
        sleep 0.2
        c1=$(lt_cpu_ns "${pid[$v]}")
        read -r req rs _ _ e < <(lt_wrk_parse "$out")
        ((req > 0)) || lt_die "$v completed no requests (see $out)"
        ((e == 0)) || lt_die "$v: $e errors (see $out)"
        us=$(awk -v a="$c0" -v b="$c1" -v n="$req" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')
        cpu[$v]+=" $us"; rps[$v]+=" $rs"
        lt_log "round $((r + 1))/$ROUNDS $v: $rs req/s, $us µs CPU/req"
    done
done

lines=$(wc -l <"$LT_TMP/access.log")
off=$(lt_median ${cpu[log_off]}); on=$(lt_median ${cpu[log_on]})
report() {
    echo "### Access log cost (medians of $ROUNDS round(s) x ${DURATION}s, $CONNS connections, 100-byte responses)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "| variant | req/s | CPU µs/req |"
    echo "|---|---:|---:|"
    printf '| access log off | %.0f | %.2f |\n' "$(lt_median ${rps[log_off]})" "$off"
    printf '| access log on (%s, to a file) + /metrics scraped each second | %.0f | %.2f |\n' "$FORMAT" "$(lt_median ${rps[log_on]})" "$on"
    echo
    awk -v a="$on" -v b="$off" 'BEGIN { printf "Logging on costs %+.1f%% CPU per request (target: at most +10%%).\n", (a / b - 1) * 100 }'
    echo "The log file got $lines lines. CPU = /proc/PID/task/*/schedstat of the proxy, per completed request."
    lt_machine_info
}
outfile="$LT_OUT/logging-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
