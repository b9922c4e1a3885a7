#!/usr/bin/env bash
# What crosses the network after an offline seed: the kernel tree seeded through a disk into a
# vault on loopback (backup --offline, diskprep, ship, import run), then a 1 % change backed up
# online, in two shapes: `spread`, bench/run.sh's (every 100th file: 786 files in 661 folders,
# whose trees are stored again) and `folders` (whole folders, every 25th, up to 1 % of the files). Issue #26's target: the vault receives at most 1.2 x the changed
# files compressed with zstd -3 (each file alone), plus 256 KiB for the recovery point, trees
# and index.
#
#   bash bench/seed_change.sh [RUNS]      (default 3; FERRY_BIN overrides target/release/ferry)
#
# Prints one line per run and writes bench/results/<date>-seed-change.txt. The change is
# reverted afterwards (also when the script fails).
set -euo pipefail

SEED_RUNS=${1:-3}
[[ $SEED_RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS wants a positive integer" >&2; exit 2; }
set --
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

[[ -x $FERRY_BIN ]] || { echo "no ferry binary at $FERRY_BIN: cargo build --release -p ferry-cli" >&2; exit 1; }
W=$WORK/seed-change
OUT=$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M)-seed-change.txt
PORT=${VAULT_PORT:-18498}
VAULT_PID=
stop_vault() {
    if [[ -n $VAULT_PID ]]; then kill "$VAULT_PID" 2>/dev/null || true; wait "$VAULT_PID" 2>/dev/null || true; fi
    VAULT_PID=
}
trap 'stop_vault; revert_kernel' EXIT

# machine ARGS / admin ARGS: ferry as the machine (its registration) or as the vault's owner.
machine() { env "FERRY_CONFIG_DIR=$W/machine" "FERRY_CACHE_DIR=$W/cache" "FERRY_PASSWORD=$PASSPHRASE" "$FERRY_BIN" "$@"; }
admin() {
    env "FERRY_CONFIG_DIR=$W/admin" "FERRY_VAULT=https://127.0.0.1:$PORT" "FERRY_TOKEN_FILE=$W/v/owner.token" \
        "FERRY_VAULT_CERT=$W/v/vault-cert.pem" "$FERRY_BIN" "$@"
}

# The other shape of a 1 % change: whole folders (every 25th, sorted) until 1 % of the files,
# each file with a line appended, as when one project is worked on. Reverted by revert_kernel.
modify_folders() {
    [[ -f $MODLIST ]] && revert_kernel
    (cd "$KERNEL_SRC" && find . -type f | LC_ALL=C sort | python3 -c '
import os, sys
files = [l.rstrip("\n") for l in sys.stdin]
by_dir = {}
for f in files:
    by_dir.setdefault(os.path.dirname(f), []).append(f)
want, chosen = len(files) // 100, []
for n, d in enumerate(by_dir):
    if n % 25 == 0 and len(chosen) < want:
        chosen += by_dir[d]
for f in chosen:
    st = os.stat(f)
    print(f"{st.st_size}\t{st.st_mtime_ns // 10**9}.{st.st_mtime_ns % 10**9:09d}\t{f}")
') >"$MODLIST.tmp"
    mv "$MODLIST.tmp" "$MODLIST"
    local size mtime f
    while IFS=$'\t' read -r size mtime f; do
        printf '\n/* ferry-bench: 1%% change */\n' >>"$KERNEL_SRC/$f"
    done <"$MODLIST"
    log "modified $(wc -l <"$MODLIST") files in $(cut -f3 "$MODLIST" | xargs -n1 dirname | sort -u | wc -l) folders of $KERNEL_SRC"
}

# measure SHAPE: back up the change that is applied (its list in $MODLIST), print the line.
measure() {
    local shape=$1 sent compressed target files folders
    machine backup --json "$KERNEL_SRC" >"$W/$shape.json" 2>"$W/$shape.err"
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_sent"])' "$W/$shape.json")
    # Each changed file compressed alone with zstd -3 (or as it is, when that is smaller).
    compressed=$(cd "$KERNEL_SRC" && cut -f3 "$MODLIST" | while IFS= read -r f; do
        z=$(zstd -3 -c -q -- "$f" | wc -c); s=$(stat -c %s -- "$f"); echo $((z < s ? z : s))
    done | awk '{t += $1} END {print t}')
    files=$(wc -l <"$MODLIST")
    folders=$(cut -f3 "$MODLIST" | xargs -n1 dirname | sort -u | wc -l)
    target=$(awk -v c="$compressed" 'BEGIN {printf "%d", 1.2 * c + 262144}')
    echo "$run $shape $files $folders $compressed $sent $target $(awk -v s="$sent" -v t="$target" 'BEGIN {printf "%.3f", s / t}')"
}

one_run() {
    trap 'stop_vault; revert_kernel' EXIT   # one_run runs in a subshell (the pipe to tee)
    rm -rf "$W"; mkdir -p "$W/d1"
    "$FERRY_BIN" vault serve --data "$W/v" --listen "127.0.0.1:$PORT" 2>"$W/serve.log" &
    VAULT_PID=$!
    for _ in $(seq 300); do grep -q "listening on" "$W/serve.log" 2>/dev/null && break; sleep 0.1; done
    admin vault credentials --out "$W/creds.json" >/dev/null
    machine register --vault-credentials "$W/creds.json" --name bench >/dev/null
    machine backup --offline --staging "$W/staging" --import-job seed "$KERNEL_SRC" >/dev/null 2>"$W/seed.err"
    machine diskprep --staging "$W/staging" --disk "$W/d1" >/dev/null 2>&1
    machine import-job ship seed --carrier bench --tracking "T$RANDOM$RANDOM" --return-address bench >/dev/null
    admin vault user add ops --role import-operator >"$W/ops.token" 2>/dev/null
    admin import run --import-job seed --disk "$W/d1" --token-file "$W/ops.token" --log-dir "$W/logs" >/dev/null 2>&1
    modify_kernel
    measure spread
    revert_kernel
    # Back to the seed's state (sends only trees), so the next change is measured against it.
    machine backup "$KERNEL_SRC" >/dev/null 2>&1
    modify_folders
    measure folders
    revert_kernel
    stop_vault
}

install_packages
prepare_kernel_full
revert_kernel
mkdir -p "$RESULTS_DIR"
{
    echo "# bytes sent to the vault by the 1 % change after an offline seed: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "data: $KERNEL_SRC; binary: $FERRY_BIN; commit $(git -C "$REPO_ROOT" rev-parse --short HEAD)"
    echo "run shape files folders changed_compressed_bytes sent_bytes target_bytes sent/target"
} | tee "$OUT"
for ((run = 1; run <= SEED_RUNS; run++)); do
    one_run | tee -a "$OUT"
done
rm -rf "$W"
