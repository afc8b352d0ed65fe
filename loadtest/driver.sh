#!/usr/bin/env bash
# What the I/O driver costs: ringway on io_uring, the same ringway with io_uring blocked by a
# seccomp filter (as in a container with the runtime's default profile: it then serves on
# epoll), and nginx, in the same run, the same way as http.sh (one worker each on core 0, an
# nginx backend with 100-byte responses and wrk on core 1, CPU µs per request from schedstat,
# rounds interleaved). The report lists each ringway's ready line, which names its driver.
#
#   loadtest/driver.sh                                   # 5 rounds x 10 s
#   PROXIES="nginx ringway ringway_seccomp ringway_epoll" loadtest/driver.sh
#                                                        # also epoll chosen by io_driver = "epoll"
#
# Env: as http.sh (DURATION, ROUNDS (5 here), CONNS, WARMUP, PROXIES, RINGWAY_BIN, KEEP_TMP).
set -euo pipefail
# The variants choose their driver themselves; the test suite's override would make all epoll.
unset MONOIO_FORCE_LEGACY_DRIVER
export ROUNDS=${ROUNDS:-5} PROXIES=${PROXIES:-nginx ringway ringway_seccomp} LT_SCRIPT=driver.sh
exec bash "$(dirname "${BASH_SOURCE[0]}")/http.sh"
