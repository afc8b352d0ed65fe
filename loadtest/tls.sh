#!/usr/bin/env bash
# TLS termination cost: ringway (rustls) vs nginx vs HAProxy (OpenSSL), each with one worker
# pinned to core 0, the same self-signed ECDSA P-256 certificate (made here with openssl), TLS 1.3
# only, in front of the same plain-HTTP nginx backend (100-byte body) on core 1, loaded by wrk on
# core 1. Two measurements per proxy, interleaved:
#   handshake  - `Connection: close` on every request, so each request is a new TCP connection
#                and a full TLS handshake (wrk does not resume sessions; resumption is off on
#                the peers too): handshakes per second of proxy CPU;
#   keepalive  - 64 keep-alive TLS connections: proxy CPU µs per request.
# Prints both tables with the ratio to nginx and writes them to loadtest/out/tls-<date>.md.
#
#   loadtest/tls.sh                               # 3 rounds x 3 proxies x 2 modes x 10 s
#   DURATION=3 ROUNDS=1 loadtest/tls.sh           # smoke run
#   PROXIES="nginx ringway" MODES=keepalive loadtest/tls.sh
#
# Env: DURATION (s, default 10), ROUNDS (3), CONNS (64 keep-alive connections), HS_CONNS (16
#      concurrent connect-request-close loops), WARMUP (s, 2), MODES ("handshake keepalive"),
#      PROXIES ("nginx haproxy ringway"), RINGWAY_BIN, KEEP_TMP.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
HS_CONNS=${HS_CONNS:-16}
WARMUP=${WARMUP:-2}
MODES=${MODES:-handshake keepalive}
PROXIES=${PROXIES:-nginx haproxy ringway}
read -r -a proxies <<<"$PROXIES"
read -r -a modes <<<"$MODES"
for v in DURATION ROUNDS CONNS HS_CONNS WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || lt_die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && ROUNDS > 0 && CONNS > 0 && HS_CONNS > 0)) || lt_die "DURATION, ROUNDS, CONNS, HS_CONNS must be > 0"
for p in "${proxies[@]}"; do
    [[ $p == nginx || $p == haproxy || $p == ringway ]] || lt_die "unknown proxy '$p' in PROXIES"
done
for m in "${modes[@]}"; do
    [[ $m == handshake || $m == keepalive ]] || lt_die "unknown mode '$m' in MODES"
done

cmdline="DURATION=$DURATION ROUNDS=$ROUNDS"
[[ $CONNS != 64 ]] && cmdline+=" CONNS=$CONNS"
[[ $HS_CONNS != 16 ]] && cmdline+=" HS_CONNS=$HS_CONNS"
[[ $WARMUP != 2 ]] && cmdline+=" WARMUP=$WARMUP"
[[ $MODES != "handshake keepalive" ]] && cmdline+=" MODES=\"$MODES\""
[[ $PROXIES != "nginx haproxy ringway" ]] && cmdline+=" PROXIES=\"$PROXIES\""
[[ -n ${RINGWAY_BIN:-} ]] && cmdline+=" RINGWAY_BIN=$RINGWAY_BIN"
[[ -n ${MONOIO_FORCE_LEGACY_DRIVER:-} ]] && cmdline+=" MONOIO_FORCE_LEGACY_DRIVER=$MONOIO_FORCE_LEGACY_DRIVER"
cmdline+=" loadtest/tls.sh"

lt_require_tools nginx haproxy wrk curl openssl
[[ " $PROXIES " == *" ringway "* ]] && LT_RINGWAY=$(lt_ringway_bin)
lt_init
lt_csv_open tls-cpu "$cmdline"

# One certificate for every proxy: the key type decides most of the handshake's cost.
lt_tls_cert "$LT_TMP/cert"
openssl x509 -in "$LT_TMP/cert/cert.pem" -noout -text | grep -q 'prime256v1' ||
    lt_die "the test certificate is not ECDSA P-256"

BODY=$(printf 'ringway-loadtest-%083d' 0)   # exactly 100 bytes, as in http.sh
((${#BODY} == 100)) || lt_die "body is ${#BODY} bytes"
lt_free_port backend_port
lt_start_backend_nginx "$backend_port" "
        default_type text/plain;
        location / { return 200 \"$BODY\"; }"
lt_log "backend nginx on 127.0.0.1:$backend_port (pid $LT_BACKEND_PID, core $LT_LOAD_CPU)"

LT_TLS_DIR="$LT_TMP/cert"
declare -A port=()
for p in "${proxies[@]}"; do
    lt_free_port "port[$p]"
    lt_start_proxy "$p" "${port[$p]}" "$backend_port"
    # Same check as http.sh, plus: the proxy really speaks TLS 1.3 with the test certificate.
    got=$(curl -sS --tlsv1.3 --cacert "$LT_TMP/cert/cert.pem" --max-time 5 -o "$LT_TMP/$p.check-body" \
        -w '%{http_code}' "https://127.0.0.1:${port[$p]}/") || true
    [[ $got == 200 ]] && cmp -s "$LT_TMP/$p.check-body" <(printf '%s' "$BODY") ||
        lt_die "$p on port ${port[$p]}: expected 200 over TLS 1.3 with the 100-byte body, got status '$got'"
    lt_log "$p on https://127.0.0.1:${port[$p]} (pid ${LT_PROXY_PID[$p]}, core $LT_PROXY_CPU)"
done

# wrk's -H needs "Name: value" with the space, so the header travels as one argument.
wrk_args() { # MODE PORT SECONDS: sets the array WRK
    case $1 in
    handshake) WRK=(taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$HS_CONNS" -d"${3}s" -H "Connection: close" --latency "https://127.0.0.1:$2/") ;;
    keepalive) WRK=(taskset -c "$LT_LOAD_CPU" wrk -t1 -c"$CONNS" -d"${3}s" --latency "https://127.0.0.1:$2/") ;;
    esac
}
wrk_cmd() { # MODE PORT SECONDS: the same command, printable
    wrk_args "$@"
    local a out=""
    for a in "${WRK[@]}"; do [[ $a == *" "* ]] && out+=" '$a'" || out+=" $a"; done
    echo "${out# }"
}

if ((WARMUP > 0)); then
    for p in "${proxies[@]}"; do
        lt_log "warm-up $p ${WARMUP}s"
        wrk_args keepalive "${port[$p]}" "$WARMUP"
        lt_run_bg "${WRK[@]}" >/dev/null
    done
fi

# --- measured rounds, interleaved and rotated as in http.sh ---------------------------------
declare -A rps=() p99=() cpu=() errs=() dead=()
runs_md=""
n=${#proxies[@]}
for ((r = 0; r < ROUNDS; r++)); do
    for m in "${modes[@]}"; do
        for ((i = 0; i < n; i++)); do
            p=${proxies[$(((i + r) % n))]}
            [[ -n ${dead[$p]:-} ]] && continue
            pid=${LT_PROXY_PID[$p]}
            if lt_proxy_gone "$p" "is gone"; then
                dead[$p]=1
                continue
            fi
            out="$LT_TMP/wrk-$m-$p-$r.txt"
            c0=$(lt_cpu_ns "$pid")
            wrk_args "$m" "${port[$p]}" "$DURATION"
            lt_run_bg "${WRK[@]}" >"$out"
            sleep 0.2
            c1=$(lt_cpu_ns "$pid")
            read -r req rs _ l99 e < <(lt_wrk_parse "$out")
            ((req > 0)) || lt_die "$p ($m) completed no requests (see $out)"
            us=$(awk -v a="$c0" -v b="$c1" -v n="$req" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')
            # handshakes per proxy CPU-second: one handshake per request in this mode.
            hs=$(awk -v a="$c0" -v b="$c1" -v n="$req" 'BEGIN { printf "%.0f", n / ((b - a) / 1e9) }')
            rps[$m,$p]+=" $rs"; p99[$m,$p]+=" $l99"; cpu[$m,$p]+=" $us"
            [[ $m == handshake ]] && cpu[hs,$p]+=" $hs"
            errs[$m,$p]=$((${errs[$m,$p]:-0} + e))
            if lt_proxy_gone "$p" "died during its run"; then dead[$p]=1; fi
            lt_log "round $((r + 1))/$ROUNDS $m $p: $rs req/s, p99 $(lt_fmt_us "$l99"), $us µs CPU/req, errors $e"
            for kv in "cpu_us_per_request $us" "requests_per_second $rs" \
                "p99_ms $(awk -v v="$l99" 'BEGIN { printf "%.3f", v / 1000 }')"; do
                lt_csv_row $((r + 1)) "$p" "${m}_$kv"
            done
            runs_md+="| $((r + 1)) | $m | $p | $req | $rs | $(lt_fmt_us "$l99") | $us | $e |"$'\n'
        done
    done
done

# --- tables ----------------------------------------------------------------------------------
ratio() { # VALUE NGINX_VALUE
    [[ -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }' || echo "—"
}
report() {
    echo "### TLS 1.3, ECDSA P-256, 100-byte responses (medians of $ROUNDS round(s) x ${DURATION}s)"
    echo
    echo '```'
    echo "$cmdline"
    echo '```'
    local p c base
    if [[ " $MODES " == *" handshake "* ]]; then
        echo
        echo "Full handshakes (\`$(wrk_cmd handshake PORT "$DURATION")\`):"
        echo
        echo "| proxy | handshakes/s | handshakes per proxy CPU-second | vs nginx | CPU µs per handshake+request | p99 | errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        base=""; [[ -n ${cpu[hs,nginx]:-} ]] && base=$(lt_median ${cpu[hs,nginx]})
        for p in "${proxies[@]}"; do
            [[ -z ${cpu[handshake,$p]:-} ]] && { echo "| $p | — | — | — | — | — | crashed before measuring |"; continue; }
            c=$(lt_median ${cpu[hs,$p]})
            printf '| %s%s | %.0f | %.0f | %s | %.1f | %s | %s |\n' "$p" "${dead[$p]:+ (died)}" \
                "$(lt_median ${rps[handshake,$p]})" "$c" "$(ratio "$c" "$base")" \
                "$(lt_median ${cpu[handshake,$p]})" "$(lt_fmt_us "$(lt_median ${p99[handshake,$p]})")" "${errs[handshake,$p]}"
        done
    fi
    if [[ " $MODES " == *" keepalive "* ]]; then
        echo
        echo "Keep-alive (\`$(wrk_cmd keepalive PORT "$DURATION")\`):"
        echo
        echo "| proxy | req/s | p99 | CPU µs/req | CPU vs nginx | errors |"
        echo "|---|---:|---:|---:|---:|---:|"
        base=""; [[ -n ${cpu[keepalive,nginx]:-} ]] && base=$(lt_median ${cpu[keepalive,nginx]})
        for p in "${proxies[@]}"; do
            [[ -z ${cpu[keepalive,$p]:-} ]] && { echo "| $p | — | — | — | — | crashed before measuring |"; continue; }
            c=$(lt_median ${cpu[keepalive,$p]})
            printf '| %s%s | %.0f | %s | %.1f | %s | %s |\n' "$p" "${dead[$p]:+ (died)}" \
                "$(lt_median ${rps[keepalive,$p]})" "$(lt_fmt_us "$(lt_median ${p99[keepalive,$p]})")" \
                "$c" "$(ratio "$c" "$base")" "${errs[keepalive,$p]}"
        done
    fi
    echo
    echo "Proxies pinned to core $LT_PROXY_CPU with one worker, backend nginx (plain HTTP) and wrk on core"
    echo "$LT_LOAD_CPU. CPU = /proc/PID/task/*/schedstat of the proxy's processes (after - before) / requests"
    echo "completed; in handshake mode every request is its own connection and full handshake."
    lt_machine_info
    echo
    echo "<details><summary>every run</summary>"
    echo
    echo "| round | mode | proxy | requests | req/s | p99 | CPU µs/req | errors |"
    echo "|---:|---|---|---:|---:|---:|---:|---:|"
    printf '%s' "$runs_md"
    echo
    echo "</details>"
}
outfile="$LT_OUT/tls-$(date -u +%Y%m%d-%H%M%S).md"
report | tee "$outfile"
lt_log "written to ${outfile#"$LT_ROOT"/}"
