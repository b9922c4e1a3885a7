#!/usr/bin/env bash
# Ferry backup straight onto a seed device (issue #5) against a backup to a local repository on
# the same file system, same data, same run; the issue asks for the device backup to reach 0.9
# of the local backup's speed (ratio local time / device time >= 0.9).
#
#   bash bench/device.sh [--runs N] [--data DIR]
#
# Default data: the kernel tree bench/run.sh prepares (bench/work/data/linux; run bench/run.sh
# once first). Each run starts a vault on loopback, registers a machine, orders and prepares a
# box device (a folder under bench/work), then times the local backup and the device backup
# (which includes checking the unlock credential, marking the job in use and sealing), in
# alternating order. Uses target/release/ferry (FERRY_BIN to override). Writes
# bench/results/<date>-device-<data folder>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3
DATA=$PWD/bench/work/data/linux
while (($#)); do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        *) echo "usage: bash bench/device.sh [--runs N] [--data DIR]" >&2; exit 2 ;;
    esac
done
FERRY=${FERRY_BIN:-$PWD/target/release/ferry}
[[ -x $FERRY ]] || { echo "no ferry binary at $FERRY: cargo build --release -p ferry-cli" >&2; exit 1; }
[[ -d $DATA ]] || { echo "no data at $DATA: run bash bench/run.sh once, or pass --data DIR" >&2; exit 1; }
W=$PWD/bench/work/device
OUT=$PWD/bench/results/$(date -u +%Y-%m-%d-%H%M)-device-$(basename "$DATA").txt
mkdir -p "$(dirname "$OUT")"
export FERRY_PASSWORD=ferry-bench-passphrase-not-secret
PORT=${VAULT_PORT:-18498}
VAULT_PID=
cleanup() { [[ -n $VAULT_PID ]] && kill "$VAULT_PID" 2>/dev/null || true; }
trap cleanup EXIT
now() { date +%s.%N; }

{
    echo "# ferry backup onto a seed device vs to a local repository, same file system: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "data: $DATA ($(find "$DATA" -type f | wc -l) files, $(du -sb "$DATA" | cut -f1) bytes); binary: $FERRY; commit $(git rev-parse --short HEAD)"
    echo "run first local_s device_s ratio(local/device)"
} | tee "$OUT"
ratios=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$W"; mkdir -p "$W/dev"
    "$FERRY" vault serve --data "$W/v" --listen "127.0.0.1:$PORT" --import-container "$W/containers" 2>"$W/serve.log" &
    VAULT_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$W/serve.log" 2>/dev/null && break; sleep 0.1; done
    ADMIN=(--vault "https://127.0.0.1:$PORT" --token-file "$W/v/owner.token" --vault-cert "$W/v/vault-cert.pem")
    FERRY_CONFIG_DIR=$W/admin "$FERRY" vault credentials --out "$W/c.json" "${ADMIN[@]}" >/dev/null
    FERRY_CONFIG_DIR=$W/cfg FERRY_CACHE_DIR=$W/cache "$FERRY" register --vault-credentials "$W/c.json" --name bench >/dev/null
    job=$(FERRY_CONFIG_DIR=$W/admin "$FERRY" device order --machine bench --type box "${ADMIN[@]}" 2>/dev/null)
    FERRY_CONFIG_DIR=$W/admin "$FERRY" device prepare "$job" --path "$W/dev" --unlock-out "$W/unlock.json" "${ADMIN[@]}" 2>/dev/null
    FERRY_CACHE_DIR=$W/lcache "$FERRY" init --repo "$W/local" >/dev/null
    tar -cf - -C "$DATA" . | cat >/dev/null
    sync
    local_run() {
        local a b
        a=$(now); FERRY_CACHE_DIR=$W/lcache "$FERRY" backup --repo "$W/local" "$DATA" >/dev/null 2>"$W/local.err"; b=$(now)
        local_s=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b - a}')
    }
    device_run() {
        local a b
        a=$(now)
        FERRY_CONFIG_DIR=$W/cfg FERRY_CACHE_DIR=$W/cache "$FERRY" backup "$DATA" --device "$W/dev" --unlock-file "$W/unlock.json" \
            >/dev/null 2>"$W/device.err"
        b=$(now)
        device_s=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b - a}')
    }
    if ((r % 2)); then first=local; local_run; sync; device_run; else first=device; device_run; sync; local_run; fi
    [[ -f $W/dev/FERRY-DEVICE/seal.bin ]] || { echo "the device backup did not seal the device: $(cat "$W/device.err")" >&2; exit 1; }
    kill "$VAULT_PID"; wait "$VAULT_PID" 2>/dev/null || true; VAULT_PID=
    ratio=$(awk -v l="$local_s" -v d="$device_s" 'BEGIN {printf "%.3f", l / d}')
    ratios+=("$ratio")
    echo "$r $first $local_s $device_s $ratio" | tee -a "$OUT"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median speed ratio (local time / device time): $median (target >= 0.9)" | tee -a "$OUT"
rm -rf "$W"
