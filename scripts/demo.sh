#!/usr/bin/env bash
# Ferry in one command: build, create a repository, back up, back up again, restore, verify.
#
#   bash scripts/demo.sh [PATH]
#
# PATH (a folder or file) defaults to this workspace's crates/ folder. Everything the demo
# makes lives in ./ferry-demo/ at the workspace root (git-ignored by a .gitignore inside it):
#
#   ferry-demo/passphrase   the repository passphrase (generated once, mode 0600)
#   ferry-demo/repo/        the repository (a local folder; az:// and s3:// work the same)
#   ferry-demo/cache/       Ferry's local cache (index and files cache) for this repository
#   ferry-demo/restore/     the restore target; PATH is restored under it by its full path
#
# Re-running is safe: the repository and passphrase are reused, the restore is redone.
# Needs only the Rust toolchain (cargo) and coreutils/diffutils.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="$ROOT/ferry-demo"
REPO="$DEMO/repo"
PASSFILE="$DEMO/passphrase"
CACHE="$DEMO/cache"
RESTORE="$DEMO/restore"
FERRY="${CARGO_TARGET_DIR:-$ROOT/target}/demo/ferry"
case "$FERRY" in /*) ;; *) FERRY="$ROOT/$FERRY" ;; esac

if [ -t 2 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD="" PLAIN=""; fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN" >&2; }
say() { printf '    %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

SRC_ARG="${1:-$ROOT/crates}"
[ -e "$SRC_ARG" ] || die "$SRC_ARG does not exist: give a folder or file to back up"
# Ferry backs up a symlink as a symlink; resolve it so the demo backs up what it points to.
SRC="$(realpath -e -- "$SRC_ARG")"

# The folder holding the demo must not be backed up into itself.
EXCLUDE=()
DIFF_EXCLUDE=()
case "$DEMO/" in
    "$SRC"/*)
        EXCLUDE=(--exclude "$DEMO")
        DIFF_EXCLUDE=(--exclude "$(basename "$DEMO")")
        ;;
esac
case "$SRC/" in "$DEMO"/*) die "$SRC is inside the demo folder $DEMO: choose another path" ;; esac

if [ -x "$FERRY" ]; then
    step "build ferry (already built: only what changed): cargo build --profile demo -p ferry-cli"
else
    step "build ferry, about 10 minutes the first time on a 2-core machine: cargo build --profile demo -p ferry-cli"
fi
# The demo profile is the release one without cross-crate LTO and debug info: 17 % less build
# time for the same speed within measurement noise (BENCHMARKS.md "Build time").
(cd "$ROOT" && cargo build --profile demo -p ferry-cli)
[ -x "$FERRY" ] || die "cargo did not produce $FERRY"
say "$("$FERRY" --version)"

mkdir -p "$DEMO"
# Keep the whole demo folder out of git (the pattern also matches this .gitignore).
[ -f "$DEMO/.gitignore" ] || printf '*\n' >"$DEMO/.gitignore"

# The repository is only usable with its passphrase: if either exists without the other,
# start both over (this is a demo; nothing else is kept here).
if [ -e "$REPO/config" ] && [ ! -s "$PASSFILE" ]; then
    say "found $REPO without its passphrase file: starting a new demo repository"
    rm -rf "$REPO" "$CACHE"
fi
if [ ! -s "$PASSFILE" ]; then
    step "generate a passphrase in $PASSFILE (mode 0600)"
    (
        umask 077
        # 32 random letters and digits.
        pw=""
        while [ "${#pw}" -lt 32 ]; do
            pw="$pw$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
        done
        printf '%s\n' "${pw:0:32}" >"$PASSFILE"
    )
fi
chmod 600 "$PASSFILE"

export FERRY_REPO="$REPO"
export FERRY_PASSWORD_FILE="$PASSFILE"
export FERRY_CACHE_DIR="$CACHE"
unset FERRY_PASSWORD FERRY_FAULT_INJECT

if [ -e "$REPO/config" ]; then
    step "reuse the repository at $REPO"
else
    rm -rf "$REPO"
    step "create a repository: ferry init --repo $REPO"
    "$FERRY" init
fi

# Bytes in the repository's objects (what an object store would bill), without folder overhead.
repo_size() { find "$REPO" -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%d\n", n }'; }
# Sizes as ferry prints them: whole bytes below 1 KiB, else two decimals in binary units.
human() {
    awk -v n="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1
        while (n >= 1024 && i < 5) { n /= 1024; i++ }
        if (i == 1) printf "%d B\n", n; else printf "%.2f %s\n", n, u[i] }'
}
now_ms() { date +%s%3N; }

# Bytes in the source's regular files (what the backup reads the first time).
SRC_BYTES=$(find "$SRC" -path "$DEMO" -prune -o -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%d\n", n }')

# backup LABEL: runs `ferry backup`, prints its summary, sets RP, ADDED and TOOK_MS.
backup() {
    local before after t0
    before=$(repo_size)
    t0=$(now_ms)
    RP=$("$FERRY" backup "$SRC" "${EXCLUDE[@]}" --tag demo) ||
        die "ferry backup failed with exit code $? (3 = some files could not be read; see above)"
    TOOK_MS=$(($(now_ms) - t0))
    after=$(repo_size)
    ADDED=$((after - before))
    say "recovery point $RP"
    say "took $((TOOK_MS / 1000)).$(printf '%03d' $((TOOK_MS % 1000)))s; the repository grew by $(human "$ADDED") (now $(human "$after"))"
}

step "back up $SRC ($(human "$SRC_BYTES")): ferry backup $SRC"
backup
RP1=$RP FIRST_MS=$TOOK_MS FIRST_ADDED=$ADDED

step "list the recovery points: ferry recovery-points"
"$FERRY" recovery-points

step "back up again (incremental: unchanged files are not even read)"
STAMP="$DEMO/.backup-started"
touch "$STAMP"
backup
RP2=$RP SECOND_MS=$TOOK_MS SECOND_ADDED=$ADDED

step "what changed between the two: ferry diff ${RP1:0:8} ${RP2:0:8}"
"$FERRY" diff "$RP1" "$RP2" >"$DEMO/diff.txt"
head -n 20 "$DEMO/diff.txt"
[ "$(wc -l <"$DEMO/diff.txt")" -le 20 ] || say "... (all of it in $DEMO/diff.txt)"

# restore_and_verify: restores the latest recovery point into a fresh target and compares.
restore_and_verify() {
    rm -rf "$RESTORE"
    step "restore it: ferry restore latest --target $RESTORE"
    "$FERRY" restore latest --target "$RESTORE"
    step "verify: diff -r $SRC $RESTORE$SRC"
    diff -r "${DIFF_EXCLUDE[@]}" -- "$SRC" "$RESTORE$SRC"
}

if ! restore_and_verify; then
    # The default source (crates/) is a live working tree: if something edited it after the
    # backup started, the difference is the edit, not the restore. Back up and verify again.
    changed=$(find "$SRC" \( -newer "$STAMP" -o -cnewer "$STAMP" \) -print 2>/dev/null | head -n 5)
    [ -n "$changed" ] || die "the restored copy differs from $SRC (see above)"
    say "$SRC changed while the demo ran (e.g. ${changed%%$'\n'*}); backing up and verifying once more"
    touch "$STAMP"
    backup
    RP2=$RP
    restore_and_verify || die "the restored copy differs from $SRC (see above)"
fi
say "identical: the restore matches $SRC byte for byte"

step "verify every byte in the repository: ferry check --read-data"
"$FERRY" check --read-data

fmt_ms() { echo "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))s"; }
step "done"
cat >&2 <<EOF
    source           $SRC ($(human "$SRC_BYTES"))
    repository       $REPO ($(human "$(repo_size)"), passphrase in $PASSFILE)
    first backup     ${RP1:0:8}  $(fmt_ms "$FIRST_MS"), added $(human "$FIRST_ADDED")
    second backup    ${RP2:0:8}  $(fmt_ms "$SECOND_MS"), added $(human "$SECOND_ADDED")
    restored to      $RESTORE$SRC (diff -r: identical)
    check            ferry check --read-data: no errors

    Try it yourself:
      export FERRY_REPO=$REPO FERRY_PASSWORD_FILE=$PASSFILE FERRY_CACHE_DIR=$CACHE
      $FERRY ls latest | head
      $FERRY --help
EOF
