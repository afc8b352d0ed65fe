#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short bounded time (FUZZ_SECONDS each, default 25) from the
# checked-in seed corpus (fuzz/corpus/TARGET). New inputs go to a scratch directory, so the seed
# corpus stays as committed; a crash stops the script and leaves its input in
# fuzz/artifacts/TARGET/ (reproduce with `cargo fuzz run TARGET FILE`, then add a regression test).
#
# Only stable Rust is installed here; cargo-fuzz needs nightly flags, which RUSTC_BOOTSTRAP=1
# unlocks on a stable compiler. The sanitizer defaults to none (FUZZ_SANITIZER=address works too,
# at several times the build time): ringway has no unsafe code in the fuzzed paths, so panics
# and failed assertions are what the targets look for.
#
#   scripts/fuzz.sh                   all targets, 25 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh chunked request
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-25}"
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

cargo fuzz build --fuzz-dir fuzz -s "$sanitizer"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    echo "== fuzz $t for ${seconds}s" >&2
    mkdir -p "$scratch/$t" "fuzz/corpus/$t"
    # The first directory receives new inputs; the seed corpus is only read.
    status=0
    cargo fuzz run --fuzz-dir fuzz -s "$sanitizer" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1 || status=$?
    grep -E "^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$scratch/$t.log" >&2 || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$scratch/$t.log" >&2
        echo "fuzz.sh: target $t failed (exit $status); the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
echo "fuzz.sh: ${#targets[@]} targets ran ${seconds}s each without a crash" >&2
