#!/usr/bin/env bash
# Every test of the workspace, with the storage emulators the store tests need.
#
#   bash scripts/test.sh [EXTRA ARGS for the test runner]
#
# 1. starts Azurite (Azure Blob), moto (S3) and PostgreSQL with scripts/test-services.sh (which
#    installs them on first use) and exports their environment;
# 2. runs `cargo nextest run --workspace --no-fail-fast` when cargo-nextest is installed (then
#    also the doc tests, which nextest does not run), otherwise `cargo test --workspace
#    --no-fail-fast`; the CLI integration tests build and use the real `ferry` binary;
# 3. stops the services again, whatever happened (unless all three were already running before
#    this script started: then they are left running, as found);
# 4. exits with the tests' status (non-zero if any test failed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SERVICES="$ROOT/scripts/test-services.sh"

say() { echo "test.sh: $*" >&2; }

# Were the services already running (someone else's session)? Then leave them as found.
running_before=$("$SERVICES" status 2>/dev/null | grep -c 'running, pid' || true)
stop_services() {
    if [ "$running_before" -ge 3 ]; then
        say "leaving the test services running (they were running before this script)"
    else
        "$SERVICES" stop || say "warning: could not stop the test services"
    fi
}
trap stop_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$SERVICES" start
eval "$("$SERVICES" env)"

status=0
if cargo nextest --version >/dev/null 2>&1; then
    say "cargo nextest run --workspace --no-fail-fast $*"
    cargo nextest run --workspace --no-fail-fast "$@" || status=$?
    # nextest does not run doc tests.
    say "cargo test --workspace --doc --no-fail-fast"
    cargo test --workspace --doc --no-fail-fast || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
else
    say "cargo-nextest is not installed; cargo test --workspace --no-fail-fast $*"
    cargo test --workspace --no-fail-fast "$@" || status=$?
fi

if [ "$status" -eq 0 ]; then
    say "all tests passed"
else
    say "TESTS FAILED (exit $status)"
fi
exit "$status"
