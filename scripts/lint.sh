#!/usr/bin/env bash
# The checks that run before the tests (CI runs this from .ci/run; run it yourself before a commit):
#
#   bash scripts/lint.sh
#
# 1. `cargo fmt --all -- --check`: the tree is formatted (rustfmt.toml);
# 2. `cargo clippy --workspace --all-targets -- -D warnings`: no lint fires, with the workspace's
#    lint set (`[workspace.lints]` in Cargo.toml);
# 3. scripts/check-doc-paths.py: every file path ARCHITECTURE.md names exists.
# Exits non-zero at the first check that fails, saying which.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "lint.sh: $*" >&2; }

say "cargo fmt --all -- --check"
cargo fmt --all -- --check || { say "unformatted code: run cargo fmt --all"; exit 1; }
say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings || { say "clippy found problems (above)"; exit 1; }
say "python3 scripts/check-doc-paths.py ARCHITECTURE.md"
python3 scripts/check-doc-paths.py ARCHITECTURE.md
say "all checks passed"
