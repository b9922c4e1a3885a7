#!/usr/bin/env bash
# Ferry backup through a vault on loopback against a backup to a local repository, same data,
# same run, interleaved; issue #3 asks for vault throughput >= 0.8 of local.
#
#   bash bench/vault.sh [--runs N] [--data DIR]
#
# Default data: the kernel tree bench/run.sh prepares (bench/work/data/linux; run bench/run.sh
# once first). Uses target/release/ferry (FERRY_BIN to override). Prints one line per run and
# the median ratio; writes bench/results/<date>-vault.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3
DATA=$PWD/bench/work/data/linux
while (($#)); do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        *) echo "usage: bash bench/vault.sh [--runs N] [--data DIR]" >&2; exit 2 ;;
    esac
done
FERRY=${FERRY_BIN:-$PWD/target/release/ferry}
[[ -x $FERRY ]] || { echo "no ferry binary at $FERRY: cargo build --release -p ferry-cli" >&2; exit 1; }
[[ -d $DATA ]] || { echo "no data at $DATA: run bash bench/run.sh once, or pass --data DIR" >&2; exit 1; }
W=$PWD/bench/work/vault
OUT=$PWD/bench/results/$(date -u +%Y-%m-%d-%H%M)-vault.txt
mkdir -p "$(dirname "$OUT")"
export FERRY_PASSWORD=ferry-bench-passphrase-not-secret
PORT=${VAULT_PORT:-18499}
VAULT_PID=
cleanup() { [[ -n $VAULT_PID ]] && kill "$VAULT_PID" 2>/dev/null || true; }
trap cleanup EXIT
now() { date +%s.%N; }
{
    echo "# ferry via vault vs local repository: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "data: $DATA ($(find "$DATA" -type f | wc -l) files, $(du -sb "$DATA" | cut -f1) bytes); binary: $FERRY; commit $(git rev-parse --short HEAD)"
    echo "run local_s vault_s ratio(local/vault) vault_peak_rss_kb"
} | tee "$OUT"
ratios=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$W"; mkdir -p "$W"
    "$FERRY" vault serve --data "$W/v" --listen "127.0.0.1:$PORT" 2>"$W/serve.log" &
    VAULT_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$W/serve.log" 2>/dev/null && break; sleep 0.1; done
    ADMIN=(--vault "https://127.0.0.1:$PORT" --token-file "$W/v/owner.token" --vault-cert "$W/v/vault-cert.pem")
    FERRY_CONFIG_DIR=$W/admin "$FERRY" vault credentials --out "$W/c.json" "${ADMIN[@]}" >/dev/null
    FERRY_CONFIG_DIR=$W/cfg FERRY_CACHE_DIR=$W/cache "$FERRY" register --vault-credentials "$W/c.json" --name bench >/dev/null
    FERRY_CACHE_DIR=$W/lcache "$FERRY" init --repo "$W/local" >/dev/null
    tar -cf - -C "$DATA" . | cat >/dev/null
    sync
    t0=$(now); FERRY_CACHE_DIR=$W/lcache "$FERRY" backup --repo "$W/local" "$DATA" >/dev/null 2>&1; t1=$(now)
    sync
    t2=$(now); FERRY_CONFIG_DIR=$W/cfg FERRY_CACHE_DIR=$W/cache "$FERRY" backup "$DATA" >/dev/null 2>&1; t3=$(now)
    rss=$(awk '/VmHWM/{print $2}' "/proc/$VAULT_PID/status")
    kill "$VAULT_PID"; wait "$VAULT_PID" 2>/dev/null || true; VAULT_PID=
    read -r local_s vault_s ratio < <(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {printf "%.2f %.2f %.3f\n", b - a, d - c, (b - a) / (d - c)}')
    ratios+=("$ratio")
    echo "$r $local_s $vault_s $ratio $rss" | tee -a "$OUT"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median throughput ratio (local time / vault time): $median (target >= 0.8)" | tee -a "$OUT"
rm -rf "$W"
