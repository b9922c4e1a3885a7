#!/usr/bin/env bash
# How fast the vault's dashboard pages and /metrics answer on a vault with many recovery points
# (issue #6: "fast on a vault with thousands of recovery points").
#
#   bash bench/dashboard.sh [--points N] [--machines M] [--runs R]
#
# Starts a vault on loopback, registers M machines through the real API (one real backup each,
# of a small folder), then gives each machine N more backup jobs with their recovery points as
# the agent would have reported them (rows in the vault's SQLite database and recovery-point
# objects in its store folder: making N real backups would take hours, and the pages read
# exactly these) and 90 days of 15-minute storage samples. Then times R requests of each page
# (curl, TLS on loopback, the owner's token as Bearer) and prints the median and the largest.
# Uses target/release/ferry (FERRY_BIN to override). Writes bench/results/<date>-dashboard.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
POINTS=5000
MACHINES=20
RUNS=9
while (($#)); do
    case $1 in
        --points) POINTS=$2; shift 2 ;;
        --machines) MACHINES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        *) echo "usage: bash bench/dashboard.sh [--points N] [--machines M] [--runs R]" >&2; exit 2 ;;
    esac
done
FERRY=${FERRY_BIN:-$PWD/target/release/ferry}
[[ -x $FERRY ]] || { echo "no ferry binary at $FERRY: cargo build --release -p ferry-cli" >&2; exit 1; }
W=$PWD/bench/work/dashboard
OUT=$PWD/bench/results/$(date -u +%Y-%m-%d-%H%M)-dashboard.txt
mkdir -p "$(dirname "$OUT")"
export FERRY_PASSWORD=ferry-bench-passphrase-not-secret
PORT=${VAULT_PORT:-18497}
VAULT_PID=
cleanup() { [[ -n $VAULT_PID ]] && kill "$VAULT_PID" 2>/dev/null || true; }
trap cleanup EXIT

rm -rf "$W"; mkdir -p "$W/src"
for i in $(seq 20); do head -c 20000 /dev/urandom > "$W/src/f$i"; done
start_vault() {
    : >"$W/serve.log"
    "$FERRY" vault serve --data "$W/v" --listen "127.0.0.1:$PORT" 2>"$W/serve.log" &
    VAULT_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$W/serve.log" 2>/dev/null && break; sleep 0.1; done
}
start_vault
ADMIN=(--vault "https://127.0.0.1:$PORT" --token-file "$W/v/owner.token" --vault-cert "$W/v/vault-cert.pem")
for m in $(seq "$MACHINES"); do
    FERRY_CONFIG_DIR=$W/admin "$FERRY" vault credentials --out "$W/c$m.json" "${ADMIN[@]}" >/dev/null
    FERRY_CONFIG_DIR=$W/cfg$m FERRY_CACHE_DIR=$W/cache$m "$FERRY" register --vault-credentials "$W/c$m.json" --name "m$m" >/dev/null
    FERRY_CONFIG_DIR=$W/cfg$m FERRY_CACHE_DIR=$W/cache$m "$FERRY" backup "$W/src" --tag bench >/dev/null 2>&1
done
kill "$VAULT_PID"; wait "$VAULT_PID" 2>/dev/null || true; VAULT_PID=

python3 - "$W/v" "$POINTS" <<'EOF'
import os, sqlite3, sys, time, hashlib, json
data, points = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(os.path.join(data, "vault.db"))
now = int(time.time())
machines = [r[0] for r in db.execute("SELECT id FROM machines")]
for m in machines:
    rp_dir = os.path.join(data, "store", "machines", m, "recovery-points")
    os.makedirs(rp_dir, exist_ok=True)
    for i in range(points):
        t = now - (points - i) * 3600
        iso = lambda u: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(u))
        cur = db.execute(
            "INSERT INTO jobs (machine, kind, state, start, \"end\", bytes, files, errors, heartbeat) "
            "VALUES (?, 'backup', 'completed', ?, ?, ?, 20, '[]', ?)",
            (m, iso(t), iso(t + 60), 1000 + i, t + 60))
        rp = hashlib.blake2b(f"{m}-{i}".encode(), digest_size=32).hexdigest()
        db.execute("INSERT INTO job_totals (job, total_bytes, recovery_point, tags) VALUES (?, ?, ?, ?)",
                   (cur.lastrowid, 400000 + i, rp, json.dumps(["nightly"])))
        with open(os.path.join(rp_dir, rp), "wb") as f:
            f.write(b"x" * 300)
    for k in range(90 * 96):
        t = now - (90 * 96 - k) * 900
        db.execute("INSERT INTO storage_samples (time, machine, stored_bytes, stored_objects, protected_bytes) VALUES (?, ?, ?, ?, ?)",
                   (t, m, 10**9 + k * 1000, 500 + k, 2 * 10**9 + k * 2000))
db.commit()
print(f"{len(machines)} machines, {points} recovery points and {90 * 96} samples each", file=sys.stderr)
EOF

start_vault
TOKEN=$(tr -d '\n' < "$W/v/owner.token")
{
    echo "# dashboard page times: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$MACHINES machines, $POINTS recovery points (jobs, objects) each, 8640 storage samples each; binary: $FERRY; commit $(git rev-parse --short HEAD)"
    echo "page median_ms max_ms bytes"
} | tee "$OUT"
for path in / /machines/m1 /imports /metrics; do
    times=()
    for ((r = 1; r <= RUNS; r++)); do
        t=$(curl -sk -o "$W/page" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$PORT$path")
        times+=("$t")
    done
    bytes=$(wc -c < "$W/page")
    [[ $path == /imports ]] || grep -q "m1" "$W/page" || { echo "page $path does not show machine m1" >&2; exit 1; }
    read -r median max < <(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.0f %.0f\n", a[int((NR+1)/2)]*1000, a[NR]*1000}')
    echo "$path $median $max $bytes" | tee -a "$OUT"
done
rm -rf "$W"
