"""Run flowgen's benchmark suite: one command, one table, one JSON file.

    python benchmarks/run.py                      # everything (about 25 minutes on 2 cores)
    python benchmarks/run.py --quick              # small sizes, 1 run each (CI's smoke test)
    python benchmarks/run.py --only replay,recovery --json out.json
    python benchmarks/run.py --no-peers           # flowgen only

Every figure is a ratio measured in this run against its anchor: a peer (DBOS Transact,
Temporal's Replayer) run on the same machine in the same session, a floor (a bare generator
loop), or a fixed target. Each is the median over several runs with the spread (min-max);
flowgen and its anchor are measured alternately, run by run. Peers are optional
(``pip install -e '.[bench]'``); without them their columns say "peer not installed".

The JSON (default ``benchmarks/results/latest.json``) holds the machine, the parameters,
every figure with its runs, and each benchmark's raw numbers. ``--markdown FILE`` also
writes the table as Markdown (what ``docs/benchmarks.md`` shows).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import Config, machine  # noqa: E402

BENCHMARKS = (
    "throughput",
    "replay",
    "lifecycle",
    "recovery",
    "waiting",
    "chatty",
    "analytics",
    "fleet",
    "mirror",
)
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cell(stats: dict[str, Any] | None, suffix: str = "") -> str:
    if not stats:
        return "-"
    if len(stats["runs"]) == 1 or stats["min"] == stats["max"]:
        return f"{_num(stats['median'])}{suffix}"
    return (
        f"{_num(stats['median'])}{suffix} ({_num(stats['min'])}-{_num(stats['max'])})"
    )


def _verdict(fig: dict[str, Any]) -> str:
    if fig["met"] is None:
        return "n/a" if fig["target"].startswith("(") else "no data"
    return "met" if fig["met"] else "NOT met"


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, section in results["benchmarks"].items():
        if "error" in section:
            out.append([name, f"FAILED: {section['error']}", "", "", "", "", "", ""])
            continue
        for fig in section["figures"]:
            out.append(
                [
                    name,
                    fig["label"],
                    f"{_cell(fig['flowgen'])} {fig['unit']}",
                    f"{fig['anchor_name']}: {_cell(fig['anchor'])}",
                    f"{_cell(fig['ratio'], 'x')} {fig['ratio_text']}"
                    if fig["ratio"]
                    else "-",
                    fig["target"],
                    _verdict(fig),
                    fig["note"],
                ]
            )
    return out


HEADER = ["bench", "figure", "flowgen", "anchor", "ratio", "target", "", "note"]


def text_table(results: dict[str, Any]) -> str:
    table = [HEADER, *rows(results)]
    widths = [min(max(len(r[i]) for r in table), 70) for i in range(len(HEADER))]
    lines = []
    for j, row in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(widths[i])[: max(widths[i], 1)]
                for i, cell in enumerate(row[:-1])
            )
            + (f"  {row[-1]}" if row[-1] else "")
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths[:-1]))
    return "\n".join(lines)


def markdown_table(results: dict[str, Any]) -> str:
    head = "| benchmark | figure | flowgen | anchor | ratio | target | verdict | note |"
    sep = "|---|---|---|---|---|---|---|---|"
    body = [
        "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |"
        for row in rows(results)
    ]
    return "\n".join([head, sep, *body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run each")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="output file")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip DBOS and Temporal"
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the table"
    )
    args = parser.parse_args(argv)

    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHMARKS)
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    repeats = args.repeats or (1 if args.quick else 3)
    cfg = Config(quick=args.quick, repeats=repeats, peers=not args.no_peers)
    results: dict[str, Any] = {
        "suite": "flowgen benchmarks",
        "mode": "quick" if args.quick else "full",
        "repeats": repeats,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "benchmarks": {},
    }
    t0 = time.perf_counter()
    failed = False
    for name in chosen:
        cfg.log(f"== {name}")
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            section = module.run(cfg)
        except Exception as exc:  # report it and go on with the others
            traceback.print_exc()
            section = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            failed = True
        section["seconds"] = time.perf_counter() - start
        results["benchmarks"][name] = section
    results["seconds"] = time.perf_counter() - t0
    # The machine is shared: the load at both ends of the run says how quiet it was.
    results["machine"]["loadavg_start"] = results["machine"].pop("loadavg")
    results["machine"]["loadavg_end"] = os.getloadavg()
    print(text_table(results))
    print(f"\n{results['seconds']:.0f} s; JSON: {args.json}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(results) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
