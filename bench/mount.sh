#!/usr/bin/env bash
# `ferry mount` against `ferry restore` on the kernel tree (issue #18: `cp -a` from the mount at
# no less than 1/3 of restore's speed, the mount process under 300 MB of RSS).
#
#   bash bench/mount.sh [RUNS]          (default 3 runs)
#
# Backs the kernel tree (bench/run.sh's data, prepared the same way under bench/work/) up once
# into a fresh repository, then, run by run, alternating which goes first:
#   restore: `ferry restore latest --target DIR` (wall time);
#   mount:   `ferry mount MP`, then `cp -a MP/latest/<kernel tree> DIR` (wall time of cp), and
#            the mount process's peak RSS (VmHWM of /proc/PID/status, read before it unmounts);
#   cp:      `cp -a <kernel tree> DIR` from the source itself: what cp costs without the mount
#            (on the machines measured, creating the files is most of it, as for a restore).
# The page cache is dropped before each (when writable: as root), so both read the repository
# from the disk. Both copies are compared with the source (diff -r). Environment: FERRY_BIN
# (default target/release/ferry), MOUNT_CACHE_SIZE (default: ferry's, 256MiB). Prints a
# Markdown table; the raw figures go to bench/work/mount/times.csv.
set -euo pipefail

M_RUNS=${1:-3}
[[ $M_RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS wants a positive integer" >&2; exit 2; }

set --
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

M=$WORK/mount
TIMES=$M/times.csv
MP=$M/mp
M_REPO=$M/repo
M_ENV=(env "FERRY_PASSWORD=$PASSPHRASE" "FERRY_CACHE_DIR=$M/cache" "FERRY_CONFIG_DIR=$M/config" "FERRY_REPO=$M_REPO")
MOUNT_PID=

drop_caches() {
    sync
    if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

unmount() {
    if [[ -n $MOUNT_PID ]] && kill -0 "$MOUNT_PID" 2>/dev/null; then
        kill -TERM "$MOUNT_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MOUNT_PID" 2>/dev/null || true
    fi
    MOUNT_PID=
    if grep -q " $MP " /proc/self/mounts; then umount -l "$MP" 2>/dev/null || fusermount -u -z "$MP" 2>/dev/null || true; fi
}

# run_restore: one measured restore into $M/out.
run_restore() {
    rm -rf "$M/out"
    drop_caches
    /usr/bin/time -f '%e' -o "$M/time" "${M_ENV[@]}" "$FERRY_BIN" restore latest --target "$M/out" >/dev/null 2>"$M/restore.err" </dev/null ||
        { echo "mount.sh: restore failed: $(tail -n 3 "$M/restore.err")" >&2; exit 1; }
    local wall; wall=$(tail -n 1 "$M/time")
    diff -r --no-dereference "$KERNEL_SRC" "$M/out${KERNEL_SRC}" >/dev/null || { echo "mount.sh: the restore differs from the source" >&2; exit 1; }
    echo "$run,restore,$wall," >>"$TIMES"
    log "run $run: restore ${wall}s"
}

# run_mount: mount, one measured cp -a of the kernel tree out of it, the mount's peak RSS.
run_mount() {
    rm -rf "$M/out"
    mkdir -p "$MP" "$M/out"
    drop_caches
    local cache=()
    [[ -n ${MOUNT_CACHE_SIZE:-} ]] && cache=(--cache-size "$MOUNT_CACHE_SIZE")
    "${M_ENV[@]}" "$FERRY_BIN" mount "$MP" "${cache[@]}" >/dev/null 2>"$M/mount.err" </dev/null &
    MOUNT_PID=$!
    for _ in $(seq 600); do
        grep -q '^mounted ' "$M/mount.err" 2>/dev/null && break
        kill -0 "$MOUNT_PID" 2>/dev/null || { echo "mount.sh: ferry mount ended: $(cat "$M/mount.err")" >&2; exit 1; }
        sleep 0.1
    done
    local from=$MP/latest$KERNEL_SRC
    /usr/bin/time -f '%e' -o "$M/time" cp -a "$from" "$M/out/" 2>"$M/cp.err" || { echo "mount.sh: cp -a failed: $(tail -n 3 "$M/cp.err")" >&2; exit 1; }
    local wall rss
    wall=$(tail -n 1 "$M/time")
    rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$MOUNT_PID/status")
    unmount
    diff -r --no-dereference "$KERNEL_SRC" "$M/out/$(basename "$KERNEL_SRC")" >/dev/null || { echo "mount.sh: the copy differs from the source" >&2; exit 1; }
    echo "$run,mount,$wall,$rss" >>"$TIMES"
    log "run $run: cp -a from the mount ${wall}s, mount peak RSS $((rss / 1024)) MiB"
}

# run_cp: one measured cp -a of the source tree itself (the reference for cp's own cost).
run_cp() {
    rm -rf "$M/out"
    mkdir -p "$M/out"
    drop_caches
    /usr/bin/time -f '%e' -o "$M/time" cp -a "$KERNEL_SRC" "$M/out/" 2>"$M/cp.err" || { echo "mount.sh: cp -a failed: $(tail -n 3 "$M/cp.err")" >&2; exit 1; }
    local wall; wall=$(tail -n 1 "$M/time")
    echo "$run,cp,$wall," >>"$TIMES"
    log "run $run: cp -a of the source ${wall}s"
}

mount_main() {
    install_packages
    prepare_kernel_full
    revert_kernel
    [[ -x $FERRY_BIN ]] || { echo "mount.sh: no ferry binary at $FERRY_BIN (cargo build --release)" >&2; exit 1; }
    unmount
    rm -rf "$M"
    mkdir -p "$M"
    trap 'unmount' EXIT
    trap 'exit 130' INT TERM
    "${M_ENV[@]}" "$FERRY_BIN" init >/dev/null 2>&1
    log "backing up $KERNEL_SRC"
    "${M_ENV[@]}" "$FERRY_BIN" backup "$KERNEL_SRC" >/dev/null 2>"$M/backup.err" || { cat "$M/backup.err" >&2; exit 1; }
    echo 'run,what,wall_s,peak_rss_kib' >"$TIMES"
    local run
    for ((run = 1; run <= M_RUNS; run++)); do
        if ((run % 2)); then run_restore; run_mount; run_cp; else run_cp; run_mount; run_restore; fi
    done
    rm -rf "$M/out"
    python3 - "$TIMES" "$FERRY_BIN" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
wall = lambda w: statistics.median(float(r["wall_s"]) for r in rows if r["what"] == w)
restore, mount = wall("restore"), wall("mount")
rss = max(int(r["peak_rss_kib"]) for r in rows if r["what"] == "mount")
print(f"binary: {sys.argv[2]}\n")
print("| kernel tree | median wall (s) | speed vs restore | runs (s) |")
print("|---|---:|---:|---|")
for w, label in (("restore", "ferry restore"), ("mount", "cp -a from ferry mount"), ("cp", "cp -a of the source (reference)")):
    runs = " ".join(f'{float(r["wall_s"]):.2f}' for r in rows if r["what"] == w)
    print(f"| {label} | {wall(w):.2f} | {restore / wall(w):.2f} | {runs} |")
print(f"\nmount process peak RSS (VmHWM, largest of the runs): {rss / 1024:.0f} MiB (target < 300 MB = 286 MiB); "
      f"cp -a at {restore / mount:.2f} of restore's speed (target >= 0.33)")
PY
}

mount_main
