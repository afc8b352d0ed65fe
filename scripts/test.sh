#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (curl, used as a real
# client by some tests), then runs unit, integration and doc tests. The runtime driver follows the
# environment: MONOIO_FORCE_LEGACY_DRIVER=1 forces epoll instead of io_uring.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v curl >/dev/null 2>&1; then
    echo "test.sh: installing curl" >&2
    (apt-get update -qq && apt-get install -y -qq curl) >/dev/null
fi

driver="io_uring"
[ -n "${MONOIO_FORCE_LEGACY_DRIVER:-}" ] && driver="epoll (MONOIO_FORCE_LEGACY_DRIVER)"
echo "test.sh: running the suite with the $driver driver" >&2
# All targets: benches run once in test mode as a smoke check. RUST_TEST_THREADS (not a
# `--test-threads` argument, which criterion benches reject) bounds parallel tests.
RUST_TEST_THREADS="${TEST_THREADS:-4}" cargo test --locked --all-targets --no-fail-fast
