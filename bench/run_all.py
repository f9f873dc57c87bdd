"""`make bench`: run every bench/bench_*.py and write bench/results.md.

Each figure is a ratio against a baseline measured in the same run on the same machine,
so the numbers mean something on any box. `--quick` shrinks the inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def kept_rows(path: Path, rerun: set[str]) -> list[str]:
    """Table rows of an earlier results.md whose area was not run again."""
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines()
            if line.startswith("| ") and not line.startswith(("| area ", "|---"))
            and line.split("|")[1].strip() not in rerun]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--only", help="comma-separated bench names (ingest,monitor,...)")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    rows: list[dict] = []
    for path in sorted(HERE.glob("bench_*.py")):
        area = path.stem.removeprefix("bench_")
        if wanted and area not in wanted:
            continue
        print(f"== {area}", flush=True)
        started = time.perf_counter()
        try:
            results = load(path).run(quick=args.quick)
        except Exception as exc:  # one broken bench must not hide the others
            results = [{"name": f"{area}: failed", "value": None, "unit": "", "baseline": None,
                        "baseline_name": "", "ratio": None, "goal": "", "ok": False, "note": repr(exc)}]
        for result in results:
            result["area"] = area
            print(f"   {result['name']}: {fmt(result['value'])} {result['unit']} | baseline "
                  f"{result['baseline_name']} {fmt(result['baseline'])} | ratio {fmt(result['ratio'])} | "
                  f"goal {result['goal']} | {'ok' if result['ok'] else 'MISSED'}", flush=True)
        print(f"   ({time.perf_counter() - started:.1f} s)")
        rows.extend(results)
    lines = [
        "# rldk benchmark results",
        "",
        f"Machine: {machine()}. Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M')}"
        + (" (quick mode)." if args.quick else "."),
        "",
        "| area | figure | value | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    table = [
        f"| {r['area']} | {r['name']} | {fmt(r['value'])} {r['unit']} | {r['baseline_name']} "
        f"{fmt(r['baseline'])} | {fmt(r['ratio'])} | {r['goal']} | {'yes' if r['ok'] else 'no'} |"
        for r in rows
    ]
    if wanted:  # a partial run replaces only its own areas' rows
        table += kept_rows(HERE / "results.md", {r["area"] for r in rows} | wanted)
        table.sort(key=lambda line: line.split("|")[1].strip())
    (HERE / "results.md").write_text("\n".join(lines + table) + "\n")
    print(f"wrote {HERE / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
