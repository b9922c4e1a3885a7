#!/usr/bin/env bash
# Ferry backup through a vault on loopback against a backup to a local repository, same data,
# same run, interleaved; issue #3 asks for vault throughput >= 0.8 of local.
#
#   bash bench/vault.sh [--runs N] [--data DIR] [--agents N]
#
# Default data: the kernel tree bench/run.sh prepares (bench/work/data/linux; run bench/run.sh
# once first). Uses target/release/ferry (FERRY_BIN to override). Prints one line per run and
# the median ratio; writes bench/results/<date>-vault.txt.
#
# With --agents N (issue #3's load test: 20), N machines back up N different trees at once:
# the top-level folders of DATA dealt out round-robin to N agents, each registered with one
# vault, against the same N backups at once to N local repositories. Reports the wall-time
# ratio and the vault's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3
AGENTS=0
DATA=$PWD/bench/work/data/linux
while (($#)); do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        --agents) AGENTS=$2; shift 2 ;;
        *) echo "usage: bash bench/vault.sh [--runs N] [--data DIR] [--agents N]" >&2; exit 2 ;;
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
start_vault() {
    "$FERRY" vault serve --data "$W/v" --listen "127.0.0.1:$PORT" 2>"$W/serve.log" &
    VAULT_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$W/serve.log" 2>/dev/null && break; sleep 0.1; done
    ADMIN=(--vault "https://127.0.0.1:$PORT" --token-file "$W/v/owner.token" --vault-cert "$W/v/vault-cert.pem")
}

if ((AGENTS > 0)); then
    OUT=${OUT%.txt}-agents$AGENTS.txt
    # N trees: the top-level folders of DATA, dealt out round-robin (hard links: no copies).
    TREES=$PWD/bench/work/vault-trees-$AGENTS
    if [[ ! -d $TREES ]]; then
        mkdir -p "$TREES.tmp"
        i=0
        for d in "$DATA"/*/; do
            t=$TREES.tmp/t$((i % AGENTS)); mkdir -p "$t"
            cp -al "$d" "$t/"
            i=$((i + 1))
        done
        mv "$TREES.tmp" "$TREES"
    fi
    {
        echo "# $AGENTS agents at once, via one vault vs to $AGENTS local repositories: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "data: $TREES ($(find "$TREES" -type f | wc -l) files, $(du -sb "$TREES" | cut -f1) bytes in $AGENTS trees); binary: $FERRY; commit $(git rev-parse --short HEAD)"
        echo "run local_s vault_s ratio(local/vault) vault_peak_rss_kb failures"
    } | tee "$OUT"
    ratios=()
    for ((r = 1; r <= RUNS; r++)); do
        rm -rf "$W"; mkdir -p "$W"
        start_vault
        for ((a = 0; a < AGENTS; a++)); do
            FERRY_CONFIG_DIR=$W/admin "$FERRY" vault credentials --out "$W/c$a.json" "${ADMIN[@]}" >/dev/null
            FERRY_CONFIG_DIR=$W/cfg$a FERRY_CACHE_DIR=$W/cache$a "$FERRY" register --vault-credentials "$W/c$a.json" --name "m$a" >/dev/null
            FERRY_CACHE_DIR=$W/lcache$a "$FERRY" init --repo "$W/local$a" >/dev/null
        done
        tar -cf - -C "$TREES" . | cat >/dev/null
        sync
        fail=0
        t0=$(now)
        for ((a = 0; a < AGENTS; a++)); do
            FERRY_CACHE_DIR=$W/lcache$a "$FERRY" backup --repo "$W/local$a" "$TREES/t$a" >/dev/null 2>"$W/local$a.err" &
        done
        for ((a = 0; a < AGENTS; a++)); do wait -n || fail=$((fail + 1)); done
        t1=$(now)
        sync
        t2=$(now)
        for ((a = 0; a < AGENTS; a++)); do
            FERRY_CONFIG_DIR=$W/cfg$a FERRY_CACHE_DIR=$W/cache$a "$FERRY" backup "$TREES/t$a" >/dev/null 2>"$W/vault$a.err" &
        done
        for ((a = 0; a < AGENTS; a++)); do wait -n || fail=$((fail + 1)); done
        t3=$(now)
        rss=$(awk '/VmHWM/{print $2}' "/proc/$VAULT_PID/status")
        # Every vault backup must have made its recovery point.
        for ((a = 0; a < AGENTS; a++)); do
            n=$(FERRY_CONFIG_DIR=$W/cfg$a FERRY_CACHE_DIR=$W/cache$a "$FERRY" recovery-points --json | grep -c '"id"' || true)
            [[ $n == 1 ]] || fail=$((fail + 1))
        done
        kill "$VAULT_PID"; wait "$VAULT_PID" 2>/dev/null || true; VAULT_PID=
        read -r local_s vault_s ratio < <(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {printf "%.2f %.2f %.3f\n", b - a, d - c, (b - a) / (d - c)}')
        ratios+=("$ratio")
        echo "$r $local_s $vault_s $ratio $rss $fail" | tee -a "$OUT"
    done
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "median throughput ratio (local time / vault time): $median (target >= 0.8)" | tee -a "$OUT"
    rm -rf "$W"
    exit 0
fi

{
    echo "# ferry via vault vs local repository: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "data: $DATA ($(find "$DATA" -type f | wc -l) files, $(du -sb "$DATA" | cut -f1) bytes); binary: $FERRY; commit $(git rev-parse --short HEAD)"
    echo "run local_s vault_s ratio(local/vault) vault_peak_rss_kb"
} | tee "$OUT"
ratios=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$W"; mkdir -p "$W"
    start_vault
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
