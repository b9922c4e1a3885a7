#!/usr/bin/env bash
# Two Ferry builds side by side on the kernel tree: first backup, unchanged backup, backup after
# the 1 % change, interleaved run by run (the order alternates), reported as medians of wall time
# and of CPU time (user + system: steadier than wall time on a shared machine) and as the ratios
# NEW/BASE. For a change that must not cost speed (a refactoring), on one machine, in one
# run, where bench/run.sh's figures from another day and machine cannot tell.
#
#   bash bench/ab.sh BASE_BINARY NEW_BINARY [RUNS]     (default 5 runs)
#
# The data and the 1 % change are bench/run.sh's (sourced); repositories and caches are fresh
# for every run. Prints a Markdown table; the raw times go to bench/work/ab/times.csv.
set -euo pipefail

BASE_BIN=$(realpath "${1:?usage: bench/ab.sh BASE_BINARY NEW_BINARY [RUNS]}")
NEW_BIN=$(realpath "${2:?usage: bench/ab.sh BASE_BINARY NEW_BINARY [RUNS]}")
AB_RUNS=${3:-5}
[[ $AB_RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS wants a positive integer" >&2; exit 2; }

set --
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

AB=$WORK/ab
TIMES=$AB/times.csv

# ab_backup LABEL BINARY SCENARIO: one measured backup of the kernel tree into LABEL's repository.
ab_backup() {
    local label=$1 bin=$2 scen=$3 t
    warm_cache "$KERNEL_SRC"
    sync
    /usr/bin/time -f '%e %U %S' -o "$AB/time" env "FERRY_PASSWORD=$PASSPHRASE" "FERRY_CACHE_DIR=$AB/cache-$label" \
        "FERRY_CONFIG_DIR=$AB/config-$label" "$bin" backup --repo "$AB/repo-$label" --json "$KERNEL_SRC" \
        >/dev/null 2>"$AB/$label.err" </dev/null || { echo "ab: $label $scen failed: $(tail -n 3 "$AB/$label.err")" >&2; exit 1; }
    local wall user sys
    read -r wall user sys < <(tail -n 1 "$AB/time")
    echo "$run,$label,$scen,$wall,$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" >>"$TIMES"
    log "run $run: $scen $label ${wall}s wall, $user+$sys s CPU"
}

ab_main() {
    install_packages
    prepare_kernel_full
    revert_kernel
    trap 'revert_kernel' EXIT
    mkdir -p "$AB"
    echo 'run,build,scenario,wall_s,cpu_s' >"$TIMES"
    local run order label bin
    for ((run = 1; run <= AB_RUNS; run++)); do
        if ((run % 2)); then order=(base new); else order=(new base); fi
        rm -rf "$AB"/repo-* "$AB"/cache-* "$AB"/config-*
        for label in "${order[@]}"; do
            bin=$BASE_BIN; [[ $label == new ]] && bin=$NEW_BIN
            env "FERRY_PASSWORD=$PASSPHRASE" "FERRY_CONFIG_DIR=$AB/config-$label" "$bin" init --repo "$AB/repo-$label" >/dev/null 2>&1
        done
        for scen in first unchanged; do
            for label in "${order[@]}"; do
                bin=$BASE_BIN; [[ $label == new ]] && bin=$NEW_BIN
                ab_backup "$label" "$bin" "$scen"
            done
        done
        modify_kernel
        for label in "${order[@]}"; do
            bin=$BASE_BIN; [[ $label == new ]] && bin=$NEW_BIN
            ab_backup "$label" "$bin" changed-1pct
        done
        revert_kernel
    done
    rm -rf "$AB"/repo-* "$AB"/cache-* "$AB"/config-*
    python3 - "$TIMES" "$BASE_BIN" "$NEW_BIN" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"base: {sys.argv[2]}\nnew:  {sys.argv[3]}\n")
print("| kernel backup | wall base / new (median s) | wall new/base | CPU base / new (median s) | CPU new/base | wall runs (base; new) |")
print("|---|---:|---:|---:|---:|---|")
for scen in ("first", "unchanged", "changed-1pct"):
    med = {}
    for col in ("wall_s", "cpu_s"):
        for b in ("base", "new"):
            med[col, b] = statistics.median(float(r[col]) for r in rows if r["scenario"] == scen and r["build"] == b)
    runs = "; ".join(" ".join(f'{float(r["wall_s"]):.2f}' for r in rows if r["scenario"] == scen and r["build"] == b) for b in ("base", "new"))
    w, c = (med["wall_s", "new"] / med["wall_s", "base"]), (med["cpu_s", "new"] / med["cpu_s", "base"])
    print(f'| {scen} | {med["wall_s", "base"]:.2f} / {med["wall_s", "new"]:.2f} | {w:.2f} | {med["cpu_s", "base"]:.2f} / {med["cpu_s", "new"]:.2f} | {c:.2f} | {runs} |')
PY
}

ab_main
