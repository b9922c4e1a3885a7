#!/usr/bin/env python3
"""Every file path ARCHITECTURE.md names must exist in the tree, and every workspace crate must
be on it.

    python3 scripts/check-doc-paths.py [DOC ...]      (default: ARCHITECTURE.md)

A path is a markdown link target that is not a URL (`docs/format.md#blobs`: the part before
`#`), or a `code span` that looks like a file or folder: it contains no spaces and either ends
in a known extension or in `/`. A path that starts at a top-level folder of the repository
(`crates/repo/src/cache.rs`) must exist there; a shorter one (`cmd/device.rs`, `db.rs`) must be
the end of some tracked file's or folder's path. Every workspace member (`cargo metadata`)
must appear by its package name and its folder. Exits 1 and names everything missing.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Source and documentation files; not `.json` or `.db`, which name files Ferry makes at run time.
EXTENSIONS = (".rs", ".md", ".sh", ".py", ".toml", ".sql", ".html", ".css", ".js")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")


def tracked() -> set[str]:
    """Tracked files and every folder above them (as 'a/b/')."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    paths = set()
    for f in out.splitlines():
        paths.add(f)
        parts = f.split("/")
        for i in range(1, len(parts)):
            paths.add("/".join(parts[:i]) + "/")
    return paths


def crates() -> list[tuple[str, str]]:
    """(package name, folder) of every workspace member."""
    out = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return [(p["name"], str(Path(p["manifest_path"]).parent.relative_to(ROOT)) + "/") for p in json.loads(out)["packages"]]


def candidates(text: str):
    for m in LINK.finditer(text):
        target = m.group(1).split("#", 1)[0]
        if target and not re.match(r"^[a-z]+:", target):
            yield target
    for m in CODE.finditer(text):
        token = m.group(1).rstrip(".,;:")
        if "://" in token or token.startswith(("-", "$", "~", "/")) or "*" in token or "<" in token:
            continue
        if token.endswith("/") and "/" in token[:-1] or token.endswith(EXTENSIONS):
            yield token


def main() -> int:
    docs = sys.argv[1:] or ["ARCHITECTURE.md"]
    files = tracked()
    top = {p.split("/", 1)[0] for p in files}
    missing = []
    for doc in docs:
        text = (ROOT / doc).read_text()
        for path in sorted(set(candidates(text))):
            path = path.removeprefix("./")
            if path.split("/", 1)[0] in top:
                ok = path in files or path.rstrip("/") + "/" in files
            else:
                ok = any(f == path or f.endswith("/" + path) for f in files)
            if not ok:
                missing.append(f"{doc}: {path}")
    # The crate map: the first document must name every crate of the workspace.
    first = (ROOT / docs[0]).read_text()
    for name, folder in crates():
        if name not in first or folder.split("/", 1)[1] not in first:
            missing.append(f"{docs[0]}: workspace crate {name} ({folder}) is not on the map")
    for m in missing:
        print(f"check-doc-paths: does not match the tree: {m}", file=sys.stderr)
    if missing:
        print("check-doc-paths: fix the document (or the tree) so the map matches", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
