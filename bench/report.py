#!/usr/bin/env python3
"""Turn the raw CSV of bench/run.sh into the markdown results page.

Usage: report.py RESULTS.csv META.txt COMMANDS.tsv > RESULTS.md

Each cell is the median over the runs in which the command succeeded; ratios are of those
medians.  A cell whose tool failed in every run shows the failure; one that failed in some runs
says in how many it succeeded.  A restore whose restored tree differed from its source is marked
WRONG and cannot meet its target.
"""
import csv
import statistics
import sys
from collections import Counter, OrderedDict

TOOLS = ["ferry", "restic", "borg"]

# (set, scenario, metric, label, target): target ("ratio", x) means ferry/restic <= x,
# ("abs", mb) means ferry <= mb MB, None means for information only.
ROWS = [
    ("kernel", "backup1", "time", "(1) kernel: first backup, time (s)", ("ratio", 1 / 3, "1/3")),
    ("kernel", "backup1", "rss", "(1) kernel: first backup, peak RSS (MB)", ("abs", 100)),
    ("kernel", "backup2", "time", "(2) kernel: unchanged backup, time (s)", ("ratio", 1 / 4, "1/4")),
    ("kernel", "backup2", "rss", "(2) kernel: unchanged backup, peak RSS (MB)", ("abs", 100)),
    ("kernel", "backup3", "time", "(3) kernel: backup after 1 % change, time (s)", ("ratio", 1 / 3, "1/3")),
    ("kernel", "backup3", "rss", "(3) kernel: backup after 1 % change, peak RSS (MB)", ("abs", 100)),
    ("kernel", "restore", "time", "(4) kernel: full restore, time (s)", ("ratio", 1 / 2, "1/2")),
    ("kernel", "restore", "rss", "(4) kernel: full restore, peak RSS (MB)", ("abs", 150)),
    ("kernel", "restore", "verify", "(4) kernel: restored tree = source", None),
    ("kernel", "size", "size", "(5) kernel: repository size after (1) (MB)", ("ratio", 1.0, "1")),
    ("large", "backup1", "time", "(6) large files: first backup, time (s)", ("ratio", 1 / 2, "1/2")),
    ("large", "backup1", "rss", "(6) large files: first backup, peak RSS (MB)", ("abs", 100)),
    ("large", "size", "size", "(6) large files: repository size (MB)", None),
    ("large", "restore", "time", "(7) large files: restore, time (s)", ("ratio", 1 / 2, "1/2")),
    ("large", "restore", "rss", "(7) large files: restore, peak RSS (MB)", ("abs", 150)),
    ("large", "restore", "verify", "(7) large files: restored files = source", None),
    ("images", "backup1", "time", "(8) images: first backup, time (s)", None),
    ("images", "backup1", "rss", "(8) images: first backup, peak RSS (MB)", ("abs", 100)),
    ("images", "size", "size", "(8) images: repository size (MB)", None),
    ("images", "restore", "time", "(9) images: restore, time (s)", ("ratio", 1 / 2, "1/2")),
    ("images", "restore", "rss", "(9) images: restore, peak RSS (MB)", ("abs", 150)),
    ("images", "restore", "verify", "(9) images: restored files = source", None),
]


def esc(s):
    return s.replace("|", "\\|").replace("\n", " ")


def num(row, metric):
    """The row's value for a metric, in report units (s, MB), or None."""
    try:
        if metric == "time":
            return float(row["wall_s"])
        if metric == "rss":
            return int(row["rss_kb"]) * 1024 / 1e6
        if metric == "size":
            return int(row["size_bytes"]) / 1e6
    except (ValueError, TypeError):
        return None
    return None


def fmt(v, metric):
    if metric == "time":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    return f"{v:.1f}"


class Cell:
    """The runs of one (set, scenario, tool) for one metric."""

    def __init__(self, rows, metric):
        self.rows = rows
        self.metric = metric
        self.n = len(rows)
        ok = [r for r in rows if r["status"] == "ok"]
        self.values = [v for v in (num(r, metric) for r in ok) if v is not None]
        self.value = statistics.median(self.values) if self.values else None
        self.failures = [r["note"] for r in rows if r["status"] != "ok"]
        # "content ok; metadata differs ..." is reported but does not make the restore wrong:
        # the content is right, and its time is still comparable.
        self.wrong = [r["verify"] for r in rows if r["verify"] and r["verify"] != "ok" and not r["verify"].startswith("content ok")]
        self.meta_only = [r["verify"] for r in rows if r["verify"] and r["verify"].startswith("content ok")]

    def text(self):
        if not self.n:
            return "not run"
        if self.metric == "verify":
            if not self.wrong and self.meta_only:
                return f"content ok; metadata differs ({len(self.meta_only)}/{self.n} runs): {esc(self.meta_only[0][:100])}"
            if not self.wrong:
                return "ok"
            return f"**WRONG** ({len(self.wrong)}/{self.n} runs): {esc(self.wrong[0][:100])}"
        if self.value is None:
            note = self.failures[0] if self.failures else "no value"
            return esc(note[:160])
        s = fmt(self.value, self.metric)
        if len(self.values) < self.n:
            s += f" ({len(self.values)}/{self.n} runs)"
        if self.wrong and self.metric == "time":
            s += " **WRONG restore**"
        return s


def ratio(a, b):
    if a is None or b is None or a.value is None or b.value is None or b.value == 0:
        return None
    return a.value / b.value


def target_text(target):
    if target is None:
        return "—"
    if target[0] == "ratio":
        return f"≤ {target[2]} of restic" if target[1] != 1 else "≤ restic"
    return f"ferry ≤ {target[1]} MB"


def target_status(target, cells, verify_cells):
    if target is None:
        return "—"
    f = cells.get("ferry")
    if f is None or not f.n:
        return "n/a (ferry not run)"
    if f.value is None:
        return "missed (ferry failed)"
    if verify_cells.get("ferry") is not None and verify_cells["ferry"].wrong:
        return "missed (wrong restore)"
    if verify_cells.get("ferry") is not None and verify_cells["ferry"].meta_only:
        return "missed (restored metadata differs)"
    if target[0] == "abs":
        return "met" if f.value <= target[1] else "missed"
    r = ratio(f, cells.get("restic"))
    if r is None:
        return "n/a (no restic figure)"
    return "met" if r <= target[1] + 1e-9 else "missed"


def main():
    csv_path, meta_path, commands_path = sys.argv[1:4]
    with open(csv_path, newline="") as f:
        data = list(csv.DictReader(f))
    meta = OrderedDict()
    with open(meta_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    commands = []
    with open(commands_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 5:
                commands.append(parts)

    runs = sorted({int(r["run"]) for r in data}) or [0]
    sets = list(OrderedDict.fromkeys(r["set"] for r in data))
    tools = [t for t in TOOLS if any(r["tool"] == t for r in data)]

    def cells_for(set_, scen, metric):
        return {t: Cell([r for r in data if r["set"] == set_ and r["scenario"] == scen
                         and r["tool"] == t], metric) for t in tools}

    out = []
    w = out.append
    w(f"# Ferry benchmark: {meta.get('date', '?')}")
    w("")
    w(f"- Mode: {meta.get('mode', '?')}; each figure is the median of the runs, "
      "ratios are of the medians; tools interleaved scenario by scenario, order rotated per run.")
    for k in ("machine", "filesystem", "load before", "load after", "duration", "ferry", "restic",
              "borg", "kernel source", "kernel data", "large data", "images data"):
        if k in meta:
            w(f"- {k.capitalize()}: {meta[k]}")
    w("- Page cache: warm (the source is read once before every backup: borg evicts what it reads from the cache, so without this the tool after borg would read from disk; the repository is read once before every restore: ferry writes its packs around the page cache, restic and borg through it).")
    w("- Units: seconds of wall time; MB = 10^6 bytes (RSS: peak resident set of the command, "
      "from GNU time; sizes: `du -sb` of the repository).")
    w("")
    w("| scenario | ferry | restic | borg | ferry/restic | borg/restic | target | ferry vs target |")
    w("|---|---:|---:|---:|---:|---:|---|---|")
    for set_, scen, metric, label, target in ROWS:
        if set_ not in sets:
            continue
        cells = cells_for(set_, scen, metric)
        verify_cells = cells_for(set_, scen, "verify") if scen == "restore" else {}
        texts = [cells[t].text() if t in cells else "not run" for t in TOOLS]
        if metric == "verify":
            fr = br = "—"
        else:
            def wrong(t):
                return verify_cells.get(t) is not None and bool(verify_cells[t].wrong)
            # no ratio for a wrong restore
            rf = None if wrong("ferry") or wrong("restic") else ratio(cells.get("ferry"), cells.get("restic"))
            rb = None if wrong("borg") or wrong("restic") else ratio(cells.get("borg"), cells.get("restic"))
            fr = f"{rf:.2f}" if rf is not None else "—"
            br = f"{rb:.2f}" if rb is not None else "—"
        w(f"| {label} | {' | '.join(texts)} | {fr} | {br} | {target_text(target)} | "
          f"{target_status(target, cells, verify_cells)} |")
    w("")

    # Failures, each distinct note once.
    notes = Counter((r["tool"], r["set"], r["scenario"], r["note"]) for r in data
                    if r["status"] != "ok" and r["note"])
    wrong = Counter((r["tool"], r["set"], r["scenario"], r["verify"]) for r in data
                    if r["verify"] and r["verify"] != "ok")
    if notes or wrong:
        w("## Failures")
        w("")
        for (tool, set_, scen, note), n in notes.items():
            w(f"- {set_} {scen}, {tool} ({n} run{'s' if n > 1 else ''}): {note}")
        for (tool, set_, scen, note), n in wrong.items():
            w(f"- {set_} {scen}, {tool} ({n} run{'s' if n > 1 else ''}): restore verification: {note}")
        w("")

    # Every run's values, to judge the noise.
    if len(runs) > 1:
        w("## Every run")
        w("")
        w("| scenario | " + " | ".join(tools) + " |")
        w("|---|" + "---:|" * len(tools))
        for set_, scen, metric, label, _ in ROWS:
            if set_ not in sets or metric == "verify":
                continue
            row = []
            for t in tools:
                vals = []
                for run in runs:
                    rs = [r for r in data if r["set"] == set_ and r["scenario"] == scen
                          and r["tool"] == t and int(r["run"]) == run]
                    v = num(rs[0], metric) if rs and rs[0]["status"] == "ok" else None
                    if rs and rs[0]["verify"] and rs[0]["verify"] != "ok":
                        vals.append("✗ (wrong)")
                    else:
                        vals.append(fmt(v, metric) if v is not None else "✗")
                row.append(" / ".join(vals))
            w(f"| {label} | " + " | ".join(row) + " |")
        w("")

    # The exact commands (those of run 1), in the order they ran.
    if commands:
        main_cwd = Counter(c[3] for c in commands).most_common(1)[0][0]
        w("## Commands")
        w("")
        w(f"Run in `{main_cwd}` unless a `cd` is shown, with stdin from /dev/null, each under "
          "`/usr/bin/time -f '%e %M'`; data paths are absolute and the same for every tool. "
          "The repositories and caches are deleted before every run.")
        for set_ in sets:
            for tool in tools:
                cmds = [c for c in commands if c[0] == set_ and c[2] == tool]
                if not cmds:
                    continue
                w("")
                w(f"{set_}, {tool}:")
                w("```sh")
                for _, scen, _, cwd, cmd in cmds:
                    prefix = "" if cwd == main_cwd else f"cd {cwd} && "
                    w(f"{prefix}{cmd.strip()}   # {scen}")
                w("```")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
