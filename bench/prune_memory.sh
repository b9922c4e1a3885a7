#!/usr/bin/env bash
# Prune's (or check's) peak memory against the size of the index (issue #2: the 80 TB design
# target; docs/design/prune-at-scale.md). For each size, makes a synthetic repository with
# crates/repo/examples/prune_bench.rs (`setup`: N data blobs indexed in packs of 500, half of
# them used by one recovery point's real trees; with --check also the data packs, as sparse
# files) and runs a prune (a check) on it in a process of its own under /usr/bin/time -v.
# Writes bench/results/prune-memory-<date>.txt (check-memory-<date>.txt).
#
#   bash bench/prune_memory.sh [--check] [N...]        (default: 1000000 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=prune SETUP_FLAGS=()
if [ "${1:-}" = "--check" ]; then
    MODE=check SETUP_FLAGS=(--packs)
    shift
fi
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 10000000)
cargo build --release -p ferry-repo --example prune_bench >&2
BIN=target/release/examples/prune_bench
WORK=bench/work/prune
OUT=bench/results/$MODE-memory-$(date -u +%Y-%m-%d-%H%M).txt
mkdir -p bench/results
echo "# $MODE peak memory by index size: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)" | tee "$OUT"
for n in "${SIZES[@]}"; do
    rm -rf "$WORK"; mkdir -p "$WORK"
    "$BIN" setup "$WORK" --entries "$n" "${SETUP_FLAGS[@]}" | tee -a "$OUT"
    /usr/bin/time -v "$BIN" "$MODE" "$WORK" 2>"$WORK/time.txt" | tee -a "$OUT"
    grep -E "Maximum resident|Elapsed" "$WORK/time.txt" | sed 's/^\s*/    /' | tee -a "$OUT"
done
rm -rf "$WORK"
