#!/usr/bin/env bash
# Export jobs (issue #18): how fast `ferry export run` writes a recovery point onto disks at the
# vault's site, and how a restore from those disks (`ferry restore --from-disk`, no network)
# compares with a restore of the same recovery point through the vault on loopback.
#
#   bash bench/export.sh [--runs N] [--data DIR] [--disks N]
#
# Default data: the kernel tree bench/run.sh prepares (bench/work/data/linux; run bench/run.sh
# once first). Each run starts a vault on loopback, registers a machine, backs DATA up through
# it, creates an export job, times `export run` onto --disks folders under bench/work (each
# capped so the export spans them all), then times the restore through the vault and the
# restore from the disks, in alternating order, each into an empty folder. Uses
# target/release/ferry (FERRY_BIN to override). Writes bench/results/<date>-export-<data>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3
DATA=$PWD/bench/work/data/linux
DISKS=3
while (($#)); do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        --disks) DISKS=$2; shift 2 ;;
        *) echo "usage: bash bench/export.sh [--runs N] [--data DIR] [--disks N]" >&2; exit 2 ;;
    esac
done
FERRY=${FERRY_BIN:-$PWD/target/release/ferry}
[[ -x $FERRY ]] || { echo "no ferry binary at $FERRY: cargo build --release -p ferry-cli" >&2; exit 1; }
[[ -d $DATA ]] || { echo "no data at $DATA: run bash bench/run.sh once, or pass --data DIR" >&2; exit 1; }
W=$PWD/bench/work/export
OUT=$PWD/bench/results/$(date -u +%Y-%m-%d-%H%M)-export-$(basename "$DATA").txt
mkdir -p "$(dirname "$OUT")"
export FERRY_PASSWORD=ferry-bench-passphrase-not-secret
PORT=${VAULT_PORT:-18499}
VAULT_PID=
cleanup() { [[ -n $VAULT_PID ]] && kill "$VAULT_PID" 2>/dev/null || true; }
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

{
    echo "# ferry export run, and restore from the export disks vs through the vault (loopback): $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "data: $DATA ($(find "$DATA" -type f | wc -l) files, $(du -sb "$DATA" | cut -f1) bytes); $DISKS disks; binary: $FERRY; commit $(git rev-parse --short HEAD)"
    echo "run first export_bytes export_s export_MBps restore_vault_s restore_disks_s ratio(vault/disks)"
} | tee "$OUT"
ratios=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$W"; mkdir -p "$W"
    "$FERRY" vault serve --data "$W/v" --listen "127.0.0.1:$PORT" 2>"$W/serve.log" &
    VAULT_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$W/serve.log" 2>/dev/null && break; sleep 0.1; done
    ADMIN=(--vault "https://127.0.0.1:$PORT" --token-file "$W/v/owner.token" --vault-cert "$W/v/vault-cert.pem")
    admin() { FERRY_CONFIG_DIR=$W/admin "$FERRY" "$@" "${ADMIN[@]}"; }
    machine() { FERRY_CONFIG_DIR=$W/cfg FERRY_CACHE_DIR=$W/cache "$FERRY" "$@"; }
    admin vault credentials --out "$W/c.json" >/dev/null
    machine register --vault-credentials "$W/c.json" --name bench >/dev/null
    machine backup "$DATA" >/dev/null 2>"$W/backup.err"
    admin export-job create bench-export --machine bench --recovery-point latest >/dev/null
    stored=$(du -sb "$W/v/store" | cut -f1)
    cap=$((stored / DISKS + stored / (4 * DISKS) + (1 << 20)))
    args=()
    for ((d = 1; d <= DISKS; d++)); do mkdir -p "$W/d$d"; args+=(--disk "$W/d$d:$cap"); done
    sync
    a=$(now); admin export run --export-job bench-export "${args[@]}" >/dev/null 2>"$W/export.err"; export_s=$(since "$a")
    bytes=$(du -sb "$W"/d* | awk '{s += $1} END {print s}')
    admin export-job ship bench-export --carrier bench --tracking "B-$r" >/dev/null
    machine export-job unlock bench-export --out "$W/unlock.json" >/dev/null
    from=(); for ((d = 1; d <= DISKS; d++)); do from+=(--from-disk "$W/d$d"); done
    vault_run() {
        rm -rf "$W/rv"; sync
        local a; a=$(now); machine restore latest --target "$W/rv" >/dev/null 2>"$W/rv.err"; vault_s=$(since "$a")
    }
    disks_run() {
        rm -rf "$W/rd"; sync
        local a; a=$(now); machine restore latest "${from[@]}" --unlock-file "$W/unlock.json" --target "$W/rd" >/dev/null 2>"$W/rd.err"
        disks_s=$(since "$a")
    }
    if ((r % 2)); then first=vault; vault_run; disks_run; else first=disks; disks_run; vault_run; fi
    diff -r "$W/rv" "$W/rd" >/dev/null || { echo "the two restores differ" >&2; exit 1; }
    kill "$VAULT_PID"; wait "$VAULT_PID" 2>/dev/null || true; VAULT_PID=
    mbps=$(awk -v b="$bytes" -v s="$export_s" 'BEGIN {printf "%.1f", b / s / 1e6}')
    ratio=$(awk -v v="$vault_s" -v d="$disks_s" 'BEGIN {printf "%.3f", v / d}')
    ratios+=("$ratio")
    echo "$r $first $bytes $export_s $mbps $vault_s $disks_s $ratio" | tee -a "$OUT"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio (restore through the vault on loopback / restore from the disks): $median" | tee -a "$OUT"
rm -rf "$W"
