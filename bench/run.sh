#!/usr/bin/env bash
# Ferry vs restic vs borg: the same data, the same run, interleaved, reported as ratios.
#
#   bash bench/run.sh [--runs N] [--quick] [--tools ferry,restic,borg] [--sets kernel,large,images]
#
# Installs what it needs (restic, borgbackup, linux-source-6.1, GNU time) through apt, prepares
# the data under bench/work/ (git-ignored, reused on the next run), runs every scenario N times
# (default 3) with the tools interleaved, verifies every restore against its source, and writes
# bench/results/<date>[-quick].md (medians and ratios) with the raw bench/results/<date>[-quick].csv
# beside it.  A failing tool (e.g. a ferry binary that does not exist yet) is recorded as failed
# in its cells and the benchmark carries on with the others.  See BENCHMARKS.md.
#
# Environment: FERRY_BIN (default target/release/ferry of this repository),
#              BENCH_TIMEOUT (seconds allowed to one measured command, default 1200).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$BENCH_DIR")
WORK=$BENCH_DIR/work
TRASH=$BENCH_DIR/work/trash
RESULTS_DIR=$BENCH_DIR/results
FERRY_BIN=${FERRY_BIN:-$REPO_ROOT/target/release/ferry}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1200}
KERNEL_TARBALL=/usr/src/linux-source-6.1.tar.xz
# One passphrase for all three tools (Ferry wants at least 16 characters).
PASSPHRASE='ferry-bench-passphrase-not-secret'

RUNS=3
QUICK=0
TOOLS=(ferry restic borg)
SETS=(kernel large images)

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($#)); do
    case $1 in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --quick) QUICK=1; shift ;;
        --tools) IFS=, read -r -a TOOLS <<<"${2:?}"; shift 2 ;;
        --tools=*) IFS=, read -r -a TOOLS <<<"${1#*=}"; shift ;;
        --sets) IFS=, read -r -a SETS <<<"${2:?}"; shift 2 ;;
        --sets=*) IFS=, read -r -a SETS <<<"${1#*=}"; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer" >&2; exit 2; }
for t in "${TOOLS[@]}"; do
    [[ $t == ferry || $t == restic || $t == borg ]] || { echo "unknown tool: $t" >&2; exit 2; }
done
for s in "${SETS[@]}"; do
    [[ $s == kernel || $s == large || $s == images ]] || { echo "unknown data set: $s" >&2; exit 2; }
done

# Full data: the whole kernel tree, 3 GiB of large files and 1.5 GB of images; quick: every 10th
# kernel file, 300 MiB of large files and 170 MB of images (separate folders, so both stay
# prepared side by side).
if ((QUICK)); then
    DATA=$WORK/data-quick
    LARGE_MIB=300
    LABEL=quick
else
    DATA=$WORK/data
    LARGE_MIB=3072
    LABEL=full
fi
KERNEL_SRC=$DATA/linux
LARGE_SRC=$DATA/large
IMAGES_SRC=$DATA/images
REPOS=$WORK/repos
RESTORES=$WORK/restore
CACHES=$WORK/cache
STAMP=$(date +%Y-%m-%d-%H%M)
((QUICK)) && STAMP+=-quick
LOGS=$WORK/logs/$STAMP
CSV=$RESULTS_DIR/$STAMP.csv
REPORT=$RESULTS_DIR/$STAMP.md
META=$LOGS/meta.txt
COMMANDS=$LOGS/commands.tsv
MODLIST=$WORK/kernel-modified.list   # present while the 1 % change is applied

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Setup: packages and data (idempotent)
# ---------------------------------------------------------------------------------------------

install_packages() {
    local missing=()
    command -v restic >/dev/null || missing+=(restic)
    command -v borg >/dev/null || missing+=(borgbackup)
    [[ -f $KERNEL_TARBALL ]] || missing+=(linux-source-6.1)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q "${missing[@]}" >&2
}

# The full kernel tree: /usr/src/linux-source-6.1.tar.xz extracted as it is.
prepare_kernel_full() {
    local dir=$WORK/data/linux stamp=$WORK/data/.linux.done
    local want; want=$(stat -c '%s %Y' "$KERNEL_TARBALL")
    [[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
    log "extracting $KERNEL_TARBALL to $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    tar -xJf "$KERNEL_TARBALL" -C "$dir" --strip-components=1
    echo "$want" >"$stamp"
}

# The quick kernel tree: every 10th file or symlink of the full tree in sorted (C locale) order.
prepare_kernel_quick() {
    local dir=$WORK/data-quick/linux stamp=$WORK/data-quick/.linux.done
    prepare_kernel_full
    local want; want="$(<"$WORK/data/.linux.done") v2"
    [[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
    log "copying every 10th kernel file to $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$WORK/data/linux" && find . -type f -o -type l | LC_ALL=C sort | awk 'NR % 10 == 1' |
        tar -cf - --no-recursion -T - | tar -xf - -C "$dir")
    echo "$want" >"$stamp"
}

# The large files: see bench/make_large.py for what each one is.
prepare_large() {
    local stamp=$DATA/.large.done
    local want="$LARGE_MIB $(sha256sum "$BENCH_DIR/make_large.py" | cut -c1-16)"
    [[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
    log "generating $LARGE_MIB MiB of large files in $LARGE_SRC"
    rm -rf "$LARGE_SRC"
    python3 "$BENCH_DIR/make_large.py" "$LARGE_SRC" "$LARGE_MIB" "$KERNEL_TARBALL"
    (cd "$LARGE_SRC" && sha256sum -- *) >"$DATA/.large.sha256"
    echo "$want" >"$stamp"
}

# The images: see bench/make_images.sh (a raw disk image, a tar of /usr/bin, a compressed tarball).
prepare_images() {
    local stamp=$DATA/.images.done
    local want="$LABEL $(sha256sum "$BENCH_DIR/make_images.sh" | cut -c1-16) $(stat -c '%s %Y' "$KERNEL_TARBALL")"
    [[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
    log "generating the images ($LABEL) in $IMAGES_SRC"
    rm -rf "$IMAGES_SRC"
    bash "$BENCH_DIR/make_images.sh" "$IMAGES_SRC" "$LABEL" "$KERNEL_TARBALL"
    (cd "$IMAGES_SRC" && sha256sum -- *) >"$DATA/.images.sha256"
    echo "$want" >"$stamp"
}

# Read the data once so that every tool, the first one included, finds it in the page cache.
# (GNU tar skips reading file contents when writing to /dev/null itself, hence the pipe.)
warm_cache() {
    tar -cf - -C "$1" . | cat >/dev/null
}

# ---------------------------------------------------------------------------------------------
# The 1 % change: every 100th regular file (sorted, C locale) gets a line appended; reverting
# truncates each back to its size and resets its mtime, so the tree is the same on every run.
# ---------------------------------------------------------------------------------------------

modify_kernel() {
    [[ -f $MODLIST ]] && revert_kernel
    (cd "$KERNEL_SRC" && find . -type f | LC_ALL=C sort | awk 'NR % 100 == 0' |
        while IFS= read -r f; do
            printf '%s\t%s\t%s\n' "$(stat -c %s "$f")" "$(stat -c %.9Y "$f")" "$f"
        done) >"$MODLIST.tmp"
    mv "$MODLIST.tmp" "$MODLIST"
    local size mtime f
    while IFS=$'\t' read -r size mtime f; do
        printf '\n/* ferry-bench: 1%% change */\n' >>"$KERNEL_SRC/$f"
    done <"$MODLIST"
    log "modified $(wc -l <"$MODLIST") files of $KERNEL_SRC"
}

revert_kernel() {
    [[ -f $MODLIST ]] || return 0
    local size mtime f
    while IFS=$'\t' read -r size mtime f; do
        truncate -s "$size" "$KERNEL_SRC/$f"
        touch -d "@$mtime" "$KERNEL_SRC/$f"
    done <"$MODLIST"
    rm -f "$MODLIST"
}

# ---------------------------------------------------------------------------------------------
# Tools.  Each function prints nothing; it sets CMD to the exact argv to run (environment
# included, through env(1)) and CWD to the folder to run it in.
#   <tool>_init REPO | <tool>_backup REPO NAME PATH | <tool>_restore REPO NAME TARGET
# NAME is the snapshot/archive name (borg needs one; ferry and restic restore "latest").
# ---------------------------------------------------------------------------------------------

ferry_env() {
    CMD=(env "FERRY_PASSWORD=$PASSPHRASE" "FERRY_CACHE_DIR=$CACHES/ferry"
        "FERRY_CONFIG_DIR=$CACHES/ferry-config" "$FERRY_BIN")
    CWD=$WORK
}
ferry_init() { ferry_env; CMD+=(init --repo "$1"); }
ferry_backup() { ferry_env; CMD+=(backup --repo "$1" --json "$3"); }
ferry_restore() { ferry_env; CMD+=(restore latest --repo "$1" --target "$3"); }

# restic 0.14 compresses only repositories of format version 2; --compression auto is the
# default there, given explicitly for the record.
restic_env() {
    CMD=(env "RESTIC_PASSWORD=$PASSPHRASE" restic --cache-dir "$CACHES/restic")
    CWD=$WORK
}
restic_init() { restic_env; CMD+=(-r "$1" init --repository-version 2); }
restic_backup() { restic_env; CMD+=(-r "$1" backup --compression auto "$3"); }
restic_restore() { restic_env; CMD+=(-r "$1" restore latest --target "$3"); }

# borg: encrypted (repokey-blake2, the fastest authenticated mode on CPUs without SHA
# extensions), zstd level 3 (closest to Ferry's default; borg's own default is lz4).
# borg extract writes into the current folder.
borg_env() {
    CMD=(env "BORG_PASSPHRASE=$PASSPHRASE" "BORG_BASE_DIR=$CACHES/borg"
        BORG_DISPLAY_PASSPHRASE=no borg)
    CWD=$WORK
}
borg_init() { borg_env; CMD+=(init -e repokey-blake2 "$1"); }
borg_backup() { borg_env; CMD+=(create --compression zstd,3 "$1::$2" "$3"); }
borg_restore() { borg_env; CMD+=(extract "$1::$2"); CWD=$3; }

# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------

# The words as a shell command line, quoting only those that need it.
shell_words() {
    local w out=()
    for w in "$@"; do
        if [[ $w =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+=("$w"); else out+=("'${w//\'/\'\\\'\'}'"); fi
    done
    printf '%s' "${out[*]}"
}

csv_quote() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }

# csv_row RUN SET SCENARIO TOOL STATUS WALL_S RSS_KB SIZE_BYTES VERIFY NOTE
csv_row() {
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" \
        "$(csv_quote "$9")" "$(csv_quote "${10}")" >>"$CSV"
}

# The last lines of a log file as one line, for a failure note.
tail_note() {
    local t
    t=$(tail -n 4 "$1" 2>/dev/null | tr '\n\t' '  ' | sed 's/  */ /g; s/^ //; s/ $//')
    printf '%s' "${t:0:300}"
}

# run_measured RUN SET SCENARIO TOOL
# Runs CMD in CWD under /usr/bin/time (wall seconds and peak RSS of the tool), with stdin from
# /dev/null and a time limit; logs stdout/stderr; sets M_STATUS (ok|failed), M_WALL, M_RSS,
# M_NOTE and M_OUT (the stdout log).  Never fails itself.
run_measured() {
    local run=$1 set=$2 scen=$3 tool=$4
    local base=$LOGS/run$1/$2-$3-$4
    mkdir -p "$(dirname "$base")"
    M_OUT=$base.out
    local err=$base.err tf=$base.time rc=0
    if ((run == 1)); then
        printf '%s\t%s\t%s\t%s\t%s\n' "$set" "$scen" "$tool" "$CWD" "$(shell_words "${CMD[@]}")" \
            >>"$COMMANDS"
    fi
    sync  # do not let the previous command's writeback land in this one's time
    log "run $run: $set $scen: $tool"
    (cd "$CWD" && timeout --kill-after=30 "$BENCH_TIMEOUT" \
        /usr/bin/time -f '%e %M' -o "$tf" -- "${CMD[@]}") </dev/null >"$M_OUT" 2>"$err" || rc=$?
    M_WALL='' M_RSS='' M_NOTE=''
    if [[ -s $tf ]]; then
        read -r M_WALL M_RSS < <(tail -n 1 "$tf") || true
        [[ $M_WALL =~ ^[0-9.]+$ ]] || M_WALL=''
        [[ $M_RSS =~ ^[0-9]+$ ]] || M_RSS=''
    fi
    if ((rc == 0)); then
        M_STATUS=ok
    else
        M_STATUS=failed
        if ((rc == 124 || rc == 137)); then
            M_NOTE="$tool failed: timed out after ${BENCH_TIMEOUT}s"
        else
            M_NOTE="$tool failed (exit $rc): $(tail_note "$err")"
        fi
        log "  $M_NOTE"
    fi
    [[ -n $M_WALL ]] && log "  ${M_WALL}s, ${M_RSS} KiB"
    return 0
}

# A command that exits 0 but did not do its job is a failure too (e.g. a stub binary).
fail_unless() {
    local cond=$1 msg=$2
    [[ $M_STATUS == ok ]] || return 0
    if ! eval "$cond"; then
        M_STATUS=failed
        M_NOTE="$msg"
        log "  $M_NOTE"
    fi
}

# init: recorded in the CSV, not part of the table.
do_init() {
    local run=$1 set=$2 tool=$3
    local repo=$REPOS/$tool-$set
    rm -rf "$repo"
    "${tool}_init" "$repo"
    run_measured "$run" "$set" init "$tool"
    fail_unless '[[ -d $repo && -n $(ls -A "$repo") ]]' \
        "$tool failed: init exited 0 but left no repository at $repo"
    csv_row "$run" "$set" init "$tool" "$M_STATUS" "$M_WALL" "$M_RSS" '' '' "$M_NOTE"
}

# backup: ferry must print its --json summary with a recovery point.
do_backup() {
    local run=$1 set=$2 scen=$3 tool=$4 name=$5 path=$6
    local repo=$REPOS/$tool-$set
    "${tool}_backup" "$repo" "$name" "$path"
    # Every backup starts with the source in the page cache: borg drops what it read from the
    # cache (posix_fadvise DONTNEED), which would hand the next tool a cold cache.
    warm_cache "$path"
    run_measured "$run" "$set" "$scen" "$tool"
    if [[ $tool == ferry ]]; then
        fail_unless 'grep -q "\"recovery_point\"" "$M_OUT"' \
            "ferry failed: backup exited 0 but printed no recovery_point (stdout: $(tail_note "$M_OUT"))"
    fi
    LAST_BACKUP_STATUS[$tool]=$M_STATUS
    csv_row "$run" "$set" "$scen" "$tool" "$M_STATUS" "$M_WALL" "$M_RSS" '' '' "$M_NOTE"
}

# repository size in bytes (du -sb), valid only if the backup before it succeeded.
do_size() {
    local run=$1 set=$2 scen=$3 tool=$4
    local repo=$REPOS/$tool-$set size status=ok note=''
    size=$(du -sb "$repo" 2>/dev/null | cut -f1) || size=''
    if [[ ${LAST_BACKUP_STATUS[$tool]} != ok ]]; then
        status=failed
        note="$tool failed: the backup before it failed"
    fi
    log "run $run: $set $scen: $tool: ${size:-?} bytes"
    csv_row "$run" "$set" "$scen" "$tool" "$status" '' '' "$size" '' "$note"
}

# restore into an empty folder, then compare the restored tree with the source.
do_restore() {
    local run=$1 set=$2 scen=$3 tool=$4 name=$5 src=$6
    local repo=$REPOS/$tool-$set target=$RESTORES/$tool verify
    discard "$target"
    mkdir -p "$target"
    "${tool}_restore" "$repo" "$name" "$target"
    # Every restore starts with its repository in the page cache, as every backup starts with
    # its source there: ferry writes packs with O_DIRECT (not through the cache), restic and
    # borg through it, so without this ferry alone would read its repository from disk.
    warm_cache "$repo"
    run_measured "$run" "$set" "$scen" "$tool"
    verify=$(verify_tree "$src" "$target$src" "$LOGS/run$run/$set-$scen-$tool.diff")
    log "  verification: $verify"
    csv_row "$run" "$set" "$scen" "$tool" "$M_STATUS" "$M_WALL" "$M_RSS" '' "$verify" "$M_NOTE"
    if [[ $set == kernel ]]; then discard "$target"; else rm -rf "$target"; fi
}

# discard PATH: move PATH out of the way into $TRASH, emptied only when the benchmark ends.
# Deleting 78,000 restored files in the middle of a run makes ext4 slow to allocate inodes for
# the next ~30 s (it avoids reusing recently deleted ones), which would penalise whichever tool
# runs next; moving them keeps every measured command on an equal footing. Used for kernel
# restores only (1.3 GB each); the large-file restores (few files, 3 GB each) are deleted.
discard() {
    [[ -e $1 ]] || return 0
    mkdir -p "$TRASH"
    mv "$1" "$TRASH/$(date +%s%N)-$(basename "$1")"
}

# verify_tree SRC RESTORED DIFFLOG: "ok" when diff -r (symlinks compared as links) finds no
# difference in content, names or types AND every entry's type, mode, size, mtime and link
# target match; "content ok; metadata differs ..." or "FAILED: ..." otherwise.
# meta_list DIR: one line per entry below DIR: type, mode, size (not for folders), mtime, path, link target.
meta_list() {
    (cd "$1" && find . -mindepth 1 -printf '%y %m %s %T@ %P %l\n' | sed -E 's/^(d [0-7]+) [0-9]+ /\1 - /' | LC_ALL=C sort -k5)
}

verify_tree() {
    local src=$1 got=$2 difflog=$3 n
    if [[ ! -d $got ]]; then
        echo "FAILED: nothing restored at $got"
        return 0
    fi
    if LC_ALL=C diff -r -q --no-dereference "$src" "$got" >"$difflog" 2>&1; then
        # Content matches; now metadata: type, mode, size, mtime (ns) and link target of every
        # entry (folders' mtimes included; the restore root itself excluded). A folder's size is
        # the file system's business (it depends on the order entries were created in; no tool
        # can set it), so it is left out.
        local meta=$difflog.meta
        if LC_ALL=C diff <(meta_list "$src") <(meta_list "$got") >"$meta" 2>&1; then
            echo ok
        else
            n=$(grep -c '^<' "$meta" || true)
            echo "content ok; metadata differs for $n entries, first: $(grep -m1 '^<' "$meta" | cut -c1-160)"
        fi
    else
        n=$(wc -l <"$difflog")
        echo "FAILED: $n differences, first: $(head -n 1 "$difflog" | cut -c1-200)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Scenarios.  Within a run every scenario goes through all tools before the next scenario
# starts; the tool order rotates from run to run (run 1: ferry restic borg, run 2: restic borg
# ferry, ...) so that no tool is always first after a cache-disturbing step.
# ---------------------------------------------------------------------------------------------

declare -A LAST_BACKUP_STATUS

tool_order() {
    local run=$1 n=${#TOOLS[@]} i
    for ((i = 0; i < n; i++)); do echo "${TOOLS[(i + run - 1) % n]}"; done
}

run_kernel() {
    local run=$1 t order
    mapfile -t order < <(tool_order "$run")
    revert_kernel
    log "run $run: kernel tree $KERNEL_SRC, tools ${order[*]}"
    warm_cache "$KERNEL_SRC"
    for t in "${order[@]}"; do do_init "$run" kernel "$t"; done
    # (1) first backup into an empty repository, (5) its repository size
    for t in "${order[@]}"; do do_backup "$run" kernel backup1 "$t" kernel-1 "$KERNEL_SRC"; done
    for t in "${order[@]}"; do do_size "$run" kernel size "$t"; done
    # (2) second backup, nothing changed
    for t in "${order[@]}"; do do_backup "$run" kernel backup2 "$t" kernel-2 "$KERNEL_SRC"; done
    # (3) backup after changing 1 % of the files
    modify_kernel
    warm_cache "$KERNEL_SRC"
    for t in "${order[@]}"; do do_backup "$run" kernel backup3 "$t" kernel-3 "$KERNEL_SRC"; done
    # (4) full restore of the latest backup (the changed tree, still in place) into an empty folder
    for t in "${order[@]}"; do do_restore "$run" kernel restore "$t" kernel-3 "$KERNEL_SRC"; done
    revert_kernel
}

# run_few_large RUN SET SRC: a set of a few large files: (6)/(8) first backup (and its
# repository size, for information), (7)/(9) restore.
run_few_large() {
    local run=$1 set=$2 src=$3 t order
    mapfile -t order < <(tool_order "$run")
    log "run $run: $set $src, tools ${order[*]}"
    warm_cache "$src"
    for t in "${order[@]}"; do do_init "$run" "$set" "$t"; done
    for t in "${order[@]}"; do do_backup "$run" "$set" backup1 "$t" "$set-1" "$src"; done
    for t in "${order[@]}"; do do_size "$run" "$set" size "$t"; done
    for t in "${order[@]}"; do do_restore "$run" "$set" restore "$t" "$set-1" "$src"; done
}

run_large() { run_few_large "$1" large "$LARGE_SRC"; }
run_images() { run_few_large "$1" images "$IMAGES_SRC"; }

# Fresh repositories and caches for every run, so every run measures the same thing.
reset_state() {
    rm -rf "$REPOS" "$CACHES"
    discard "$RESTORES"
    mkdir -p "$REPOS" "$RESTORES" "$CACHES"
}

# ---------------------------------------------------------------------------------------------
# Metadata for the report: machine, versions, data, timing
# ---------------------------------------------------------------------------------------------

# describe_files DIR SHA256LIST: each file's size, allocated bytes and SHA-256 prefix.
describe_files() {
    local f
    printf '%s: ' "$1"
    (cd "$1" && for f in *; do printf '%s %s bytes (%s allocated), sha256 %s; ' "$f" "$(stat -c %s "$f")" "$(($(stat -c '%b * %B' "$f")))" "$(grep " $f\$" "$2" | cut -c1-16)"; done)
}

write_meta() {
    local ferry_version git_rev
    ferry_version=$("$FERRY_BIN" --version 2>/dev/null | head -n 1) || true
    if [[ ! -x $FERRY_BIN ]]; then
        ferry_version="(no binary at $FERRY_BIN)"
    fi
    git_rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$REPO_ROOT" diff --quiet HEAD -- crates 2>/dev/null || git_rev+=" (crates/ modified)"
    {
        echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "mode	$LABEL, $RUNS run(s), tools: ${TOOLS[*]}, data sets: ${SETS[*]}"
        echo "machine	$(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr), $(. /etc/os-release && echo "$PRETTY_NAME")"
        echo "filesystem	$(df -T "$WORK" | awk 'NR == 2 {print $2}') ($WORK)"
        echo "load before	$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "ferry	${ferry_version:-(no --version output)}; binary $FERRY_BIN$([[ -e $FERRY_BIN ]] && stat -c ', built %y' "$FERRY_BIN" | cut -d. -f1); workspace commit $git_rev"
        echo "restic	$(restic version 2>&1 | head -n 1)"
        echo "borg	$(borg --version 2>&1 | head -n 1)"
        echo "kernel source	$(dpkg-query -W -f '${Package} ${Version}' linux-source-6.1 2>/dev/null)"
    } >"$META"
    local s
    for s in "${SETS[@]}"; do
        case $s in
            kernel) echo "kernel data	$KERNEL_SRC: $(find "$KERNEL_SRC" -type f | wc -l) files, $(find "$KERNEL_SRC" -type d | wc -l) folders, $(find "$KERNEL_SRC" -type l | wc -l) symlinks, $(du -sb --apparent-size "$KERNEL_SRC" | cut -f1) bytes" >>"$META" ;;
            large) echo "large data	$(describe_files "$LARGE_SRC" "$DATA/.large.sha256")" >>"$META" ;;
            images) echo "images data	$(describe_files "$IMAGES_SRC" "$DATA/.images.sha256")" >>"$META" ;;
        esac
    done
}

# check_space: refuse to start a run that would fill the disk half-way (a full disk makes the
# tools fail in the middle, which would read as failed restores). Kernel restores are kept until
# the end (see discard): RUNS x tools kernel trees, plus the repositories (a quarter of the
# tree each); the large files need the repositories (about 0.6 of the data each) and one restore.
check_space() {
    local need=$((2 << 30)) n=${#TOOLS[@]} s k l avail
    for s in "${SETS[@]}"; do
        case $s in
            kernel) k=$(du -sb "$KERNEL_SRC" | cut -f1); need=$((need + RUNS * n * k + n * k / 4)) ;;
            large) l=$(du -sb "$LARGE_SRC" | cut -f1); need=$((need + n * l * 6 / 10 + l)) ;;
            images) l=$(du -sb "$IMAGES_SRC" | cut -f1); need=$((need + n * l * 6 / 10 + l)) ;;
        esac
    done
    avail=$(df -B1 --output=avail "$WORK" | tail -n 1)
    if ((avail < need)); then
        echo "bench: $WORK has $((avail >> 30)) GiB free; this run needs about $((need >> 30)) GiB" \
            "(${RUNS} run(s) of ${TOOLS[*]} on ${SETS[*]}). Free some space, or use fewer --runs," \
            "--tools or --sets." >&2
        exit 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

main() {
    local t0=$SECONDS run s
    install_packages
    mkdir -p "$WORK" "$RESULTS_DIR" "$LOGS"
    trap 'revert_kernel; rm -rf "$TRASH"' EXIT
    trap 'exit 130' INT TERM
    for s in "${SETS[@]}"; do
        case $s in
            kernel) if ((QUICK)); then prepare_kernel_quick; else prepare_kernel_full; fi ;;
            large) prepare_large ;;
            images) prepare_images ;;
        esac
    done
    revert_kernel   # in case an earlier run was interrupted while the 1 % change was applied
    check_space
    echo 'run,set,scenario,tool,status,wall_s,rss_kb,size_bytes,verify,note' >"$CSV"
    : >"$COMMANDS"
    write_meta
    [[ -x $FERRY_BIN ]] || log "warning: no ferry binary at $FERRY_BIN: its cells will say so"
    for ((run = 1; run <= RUNS; run++)); do
        reset_state
        for s in "${SETS[@]}"; do "run_$s" "$run"; done
    done
    reset_state   # the repositories and caches of the last run are not needed any more
    echo "load after	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"
    echo "duration	$(((SECONDS - t0) / 60)) min $(((SECONDS - t0) % 60)) s (data preparation included)" >>"$META"
    python3 "$BENCH_DIR/report.py" "$CSV" "$META" "$COMMANDS" >"$REPORT"
    log "wrote $REPORT and $CSV"
    cat "$REPORT"
}

# Sourced (bench/ab.sh uses the data preparation and the 1 % change), it only defines.
[[ ${BASH_SOURCE[0]} != "$0" ]] || main
