#!/usr/bin/env bash
# Runs one fuzz target the way docs/RELIABILITY.md reports it:
#   fuzz/run.sh TARGET [SECONDS]      (default 600)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# The committed seeds (fuzz/corpus/TARGET) are read; what the run grows goes to
# fuzz/work/TARGET and what it finds to fuzz/artifacts/TARGET (both git-ignored).
# Memory: -rss_limit_mb for the process, -malloc_limit_mb for any one allocation
# (AddressSanitizer's allocator hooks, the default sanitizer), per target below.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
case "$target" in
    splitter) max_len=140000; malloc_mb=64; dict= ;;     # past 64 KiB: too-long records
    cells) max_len=4096; malloc_mb=64; dict= ;;
    row_contract) max_len=16384; malloc_mb=128; dict=$PWD/fuzz/dict/row_contract.dict ;;
    encrypted_reader) max_len=4096; malloc_mb=16; dict= ;;  # plaintexts of up to 3 chunks are built from it
    config) max_len=4096; malloc_mb=64; dict=$PWD/fuzz/dict/config.dict ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
esac
mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
exec nice -n 10 cargo +nightly fuzz run "$target" "$PWD/fuzz/work/$target" "$PWD/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb="$malloc_mb" \
    -max_len="$max_len" -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$PWD/fuzz/artifacts/$target/" ${dict:+-dict=$dict} </dev/null
