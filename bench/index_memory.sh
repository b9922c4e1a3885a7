#!/usr/bin/env bash
# Index memory: peak RSS of the local cache's on-disk index as it grows to 10 million blobs.
#
#   bash bench/index_memory.sh [index_bench arguments...]
#
# Builds crates/repo/examples/index_bench.rs in release, runs it under GNU time (`/usr/bin/time -v`)
# with its database in bench/work/index-memory/ (git-ignored, removed after the run), and writes
# everything it printed plus the maximum resident set size to
# bench/results/index-memory-<date>.txt. Arguments are passed to index_bench (default: 10 million
# entries, 16 MiB page cache, 1 million lookups each of present and absent IDs); see
# BENCHMARKS.md, "Index memory at 10 million chunks".
#
# Needs about 4.5 GB free under bench/work/ at 10 million entries (the database reaches 4 GiB).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$BENCH_DIR")
WORK=$BENCH_DIR/work/index-memory
RESULTS_DIR=$BENCH_DIR/results
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=$RESULTS_DIR/index-memory-$STAMP.txt
TIME_BIN=/usr/bin/time

if [[ ! -x $TIME_BIN ]]; then
    echo "index_memory: $TIME_BIN (GNU time) is missing: apt-get install time" >&2
    exit 1
fi

cd "$REPO_ROOT"
cargo build -p ferry-repo --release --example index_bench
BIN=$REPO_ROOT/target/release/examples/index_bench

mkdir -p "$WORK" "$RESULTS_DIR"
rm -f "$WORK/index.redb"
trap 'rm -f "$WORK/index.redb"' EXIT

{
    echo "# index_bench $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm), $(nproc) cores, commit $(git rev-parse --short HEAD)"
    echo "# $BIN --dir $WORK $*"
} >"$OUT"
# GNU time writes its report to stderr; keep it in a separate file so it follows the output.
"$TIME_BIN" -v -o "$OUT.time" "$BIN" --dir "$WORK" "$@" 2>&1 | tee -a "$OUT"
{
    echo
    echo "# /usr/bin/time -v"
    cat "$OUT.time"
} >>"$OUT"
rm -f "$OUT.time"
grep -E 'Maximum resident set size|Elapsed \(wall clock\)' "$OUT"
echo "index_memory: results in $OUT"
