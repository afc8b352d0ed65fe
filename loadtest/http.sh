#!/usr/bin/env bash
# HTTP/1.1 keep-alive proxying cost: ringway vs nginx vs HAProxy, each with one worker pinned
# to core 0, in front of the same nginx backend (fixed 100-byte body) on core 1, loaded by wrk
# on core 1. Prints req/s, p50/p99 and the proxy's CPU µs per request (from schedstat), with
# the ratio to nginx, and writes the same table to loadtest/out/http-<date>.md and its rows to
# loadtest/out/http-keepalive-cpu-<date>.csv.
#
#   loadtest/http.sh                          # 3 rounds x 3 proxies x 10 s, 64 connections
#   DURATION=5 ROUNDS=1 loadtest/http.sh      # quick look
#   PROXIES="nginx haproxy" loadtest/http.sh  # without ringway (no cargo build)
#
# Env: DURATION (s, default 10), ROUNDS (3), CONNS (64), WARMUP (s per proxy, 2),
#      PROXIES ("nginx haproxy ringway"; also ringway_base: the build in RINGWAY_BASE_BIN),
#      RINGWAY_BIN (skip the build), KEEP_TMP (keep configs/logs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
PROXIES=${PROXIES:-nginx haproxy ringway}
read -r -a proxies <<<"$PROXIES"
for v in DURATION ROUNDS CONNS WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && CONNS > 0)) || lt_die "DURATION, ROUNDS and CONNS must be > 0"
lt_check_proxies "$PROXIES"

# The command line that reproduces this table, printed with it.
cmdline="DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS"
[[ $WARMUP != 2 ]] && cmdline+=" WARMUP=$WARMUP"
[[ $PROXIES != "nginx haproxy ringway" ]] && cmdline+=" PROXIES=\"$PROXIES\""
[[ -n ${RINGWAY_BIN:-} ]] && cmdline+=" RINGWAY_BIN=$RINGWAY_BIN"
[[ -n ${RINGWAY_BASE_BIN:-} ]] && cmdline+=" RINGWAY_BASE_BIN=$RINGWAY_BASE_BIN"
[[ -n ${MONOIO_FORCE_LEGACY_DRIVER:-} ]] && cmdline+=" MONOIO_FORCE_LEGACY_DRIVER=$MONOIO_FORCE_LEGACY_DRIVER"
cmdline+=" loadtest/${LT_SCRIPT:-http.sh}"

lt_require_tools nginx haproxy wrk curl
# Build before anything runs: a compile must never overlap a measurement.
[[ " $PROXIES " == *" ringway"* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open "http-keepalive${MONOIO_FORCE_LEGACY_DRIVER:+-epoll}-cpu" "$cmdline"

# --- backend: 100 bytes, keep-alive, on the load core ---------------------------------------
BODY=$(printf 'ringway-loadtest-%083d' 0)   # exactly 100 bytes
((${#BODY} == 100)) || lt_die "body is ${#BODY} bytes"
lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        default_type text/plain;
        location / { return 200 \"$BODY\"; }"
lt_log "backend nginx on 127.0.0.1:$backend_port (pid $LT_BACKEND_PID, core $LT_LOAD_CPU)"

# --- proxies: one worker each on the proxy core --------------------------------------------
declare -A port=()
for p in "${proxies[@]}"; do
    lt_free_port "port[$p]"
    lt_start_proxy "$p" "${port[$p]}" "$backend_port"
    # Fail early and clearly if a proxy does not pass the body through.
    got=$(curl -sS --max-time 5 -o "$LT_TMP/$p.check-body" -w '%{http_code}' "http://127.0.0.1:${port[$p]}/") || true
    [[ $got == 200 ]] && cmp -s "$LT_TMP/$p.check-body" <(printf '%s' "$BODY") ||
        lt_die "$p on port ${port[$p]}: expected 200 with the 100-byte body, got status '$got'"
    lt_log "$p on 127.0.0.1:${port[$p]} (pid ${LT_PROXY_PID[$p]}, core $LT_PROXY_CPU)"
done

wrk_cmd() { # PORT SECONDS
    echo "taskset -c $LT_LOAD_CPU wrk -t1 -c$CONNS -d${2}s --latency http://127.0.0.1:$1/"
}

# Warm-up: fills each proxy's upstream pool and faults its memory in before anything counts.
if ((WARMUP > 0)); then
    for p in "${proxies[@]}"; do
        lt_log "warm-up $p ${WARMUP}s"
        # shellcheck disable=SC2046
        lt_run_bg $(wrk_cmd "${port[$p]}" "$WARMUP") >/dev/null
    done
fi

# --- measured rounds -------------------------------------------------------------------------
# Interleaved (and the order rotated each round) so the machine's noise, which drifts over
# minutes on this shared host, lands on every proxy alike.
declare -A rps=() p50=() p99=() cpu=() bcpu=() errs=() dead=()
runs_md=""
noise=""
n=${#proxies[@]}
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        p=${proxies[$(((i + r) % n))]}
        [[ -n ${dead[$p]:-} ]] && continue
        pid=${LT_PROXY_PID[$p]}
        if lt_proxy_gone "$p" "is gone"; then
            dead[$p]=1
            continue
        fi
        out="$LT_TMP/wrk-$p-$r.txt"
        c0=$(lt_cpu_ns "$pid"); b0=$(lt_cpu_ns "$LT_BACKEND_PID")
        read -r k0 s0 < <(lt_core_ticks "$LT_PROXY_CPU"); t0=$(date +%s%N)
        # shellcheck disable=SC2046
        lt_run_bg $(wrk_cmd "${port[$p]}" "$DURATION") >"$out"
        # Let the proxy finish closing the 64 connections: that work belongs to these requests.
        sleep 0.2
        c1=$(lt_cpu_ns "$pid"); b1=$(lt_cpu_ns "$LT_BACKEND_PID")
        read -r k1 s1 < <(lt_core_ticks "$LT_PROXY_CPU"); t1=$(date +%s%N)
        read -r req rs l50 l99 e < <(lt_wrk_parse "$out")
        ((req > 0)) || lt_die "$p completed no requests (see $out)"
        us=$(awk -v a="$c0" -v b="$c1" -v n="$req" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')
        bus=$(awk -v a="$b0" -v b="$b1" -v n="$req" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')
        # Noise check: share of the proxy core's wall time spent on anything but the proxy, and
        # stolen by the hypervisor. Large values make that run's figures suspect.
        other=$(awk -v k="$((k1 - k0))" -v hz="$LT_CLK_TCK" -v c="$((c1 - c0))" -v w="$((t1 - t0))" \
            'BEGIN { o = (k * 1e9 / hz - c) / w * 100; if (o < 0) o = 0; printf "%.0f", o }')
        steal=$(awk -v s="$((s1 - s0))" -v hz="$LT_CLK_TCK" -v w="$((t1 - t0))" 'BEGIN { printf "%.0f", s * 1e9 / hz / w * 100 }')
        noise+=" $other"
        rps[$p]+=" $rs"; p50[$p]+=" $l50"; p99[$p]+=" $l99"; cpu[$p]+=" $us"; bcpu[$p]+=" $bus"
        errs[$p]=$((${errs[$p]:-0} + e))
        if lt_proxy_gone "$p" "died during its run"; then dead[$p]=1; fi
        lt_log "round $((r + 1))/$ROUNDS $p: $rs req/s, p50 $(lt_fmt_us "$l50"), p99 $(lt_fmt_us "$l99"), $us µs CPU/req, errors $e"
        for kv in "cpu_us_per_request $us" "backend_cpu_us_per_request $bus" "requests_per_second $rs" \
            "p99_ms $(awk -v v="$l99" 'BEGIN { printf "%.3f", v / 1000 }')"; do
            lt_csv_row $((r + 1)) "$p" $kv
        done
        runs_md+="| $((r + 1)) | $p | $req | $rs | $(lt_fmt_us "$l50") | $(lt_fmt_us "$l99") | $us | $bus | $e | $other% | $steal% |"$'\n'
    done
done

# --- table -----------------------------------------------------------------------------------
nginx_cpu=""
[[ -n ${cpu[nginx]:-} ]] && nginx_cpu=$(lt_median ${cpu[nginx]})
report() {
    echo "### HTTP/1.1 keep-alive, 100-byte responses (medians of $ROUNDS round(s) x ${DURATION}s, $CONNS connections)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    echo
    echo "| proxy | req/s | p50 | p99 | CPU µs/req | CPU vs nginx | backend CPU µs/req | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for p in "${proxies[@]}"; do
        if [[ -z ${cpu[$p]:-} ]]; then
            echo "| $p | — | — | — | — | — | — | crashed before measuring |"
            continue
        fi
        local c ratio="—"
        c=$(lt_median ${cpu[$p]})
        [[ -n $nginx_cpu ]] && ratio=$(awk -v a="$c" -v b="$nginx_cpu" 'BEGIN { printf "%.2f×", a / b }')
        printf '| %s%s | %.0f | %s | %s | %.1f | %s | %.1f | %s |\n' "$p" "${dead[$p]:+ (died)}" \
            "$(lt_median ${rps[$p]})" "$(lt_fmt_us "$(lt_median ${p50[$p]})")" \
            "$(lt_fmt_us "$(lt_median ${p99[$p]})")" "$c" "$ratio" "$(lt_median ${bcpu[$p]})" "${errs[$p]}"
    done
    echo
    lt_paired "CPU per request" cpu "${proxies[@]}"
    echo "Each run: \`$(wrk_cmd PORT "$DURATION")\`; proxies pinned to core $LT_PROXY_CPU with one worker,"
    echo "backend nginx and wrk on core $LT_LOAD_CPU. CPU = sum of /proc/PID/task/*/schedstat field 1 over the"
    echo "proxy's processes (after - before) / requests completed. errors = non-2xx + socket errors, all rounds."
    lt_machine_info
    local nmax warn=""
    nmax=$(printf '%s\n' $noise | sort -n | tail -1)
    ((nmax > 10)) && warn=" (noisy: another process shared the proxy core; compare with care)"
    echo "- other work on the proxy core during the runs: median $(lt_median $noise)%, max $nmax%$warn"
    echo
    echo "<details><summary>every run</summary>"
    echo
    echo "| round | proxy | requests | req/s | p50 | p99 | CPU µs/req | backend µs/req | errors | other on core $LT_PROXY_CPU | steal |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s' "$runs_md"
    echo
    echo "</details>"
}
outfile="$LT_OUT/${LT_SCRIPT:-http.sh}"
outfile="${outfile%.sh}-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
