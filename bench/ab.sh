#!/usr/bin/env bash
# Two Ferry builds side by side on the kernel tree: first backup, unchanged backup, backup after
# the 1 % change, interleaved run by run (the order alternates), reported as medians and as the
# ratio NEW/BASE. For a change that must not cost speed (a refactoring), on one machine, in one
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
    /usr/bin/time -f '%e' -o "$AB/time" env "FERRY_PASSWORD=$PASSPHRASE" "FERRY_CACHE_DIR=$AB/cache-$label" \
        "FERRY_CONFIG_DIR=$AB/config-$label" "$bin" backup --repo "$AB/repo-$label" --json "$KERNEL_SRC" \
        >/dev/null 2>"$AB/$label.err" </dev/null || { echo "ab: $label $scen failed: $(tail -n 3 "$AB/$label.err")" >&2; exit 1; }
    t=$(tail -n 1 "$AB/time")
    echo "$run,$label,$scen,$t" >>"$TIMES"
    log "run $run: $scen $label ${t}s"
}

ab_main() {
    install_packages
    prepare_kernel_full
    revert_kernel
    trap 'revert_kernel' EXIT
    mkdir -p "$AB"
    echo 'run,build,scenario,wall_s' >"$TIMES"
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
print("| kernel backup | base median s | new median s | new/base | runs (base; new) |")
print("|---|---:|---:|---:|---|")
for scen in ("first", "unchanged", "changed-1pct"):
    t = {b: [float(r["wall_s"]) for r in rows if r["scenario"] == scen and r["build"] == b] for b in ("base", "new")}
    mb, mn = statistics.median(t["base"]), statistics.median(t["new"])
    runs = "; ".join(" ".join(f"{x:.2f}" for x in t[b]) for b in ("base", "new"))
    print(f"| {scen} | {mb:.2f} | {mn:.2f} | {mn / mb:.2f} | {runs} |")
PY
}

ab_main
