"""Comprehensive PPO forensics demo: the doctored KL-spike run next to a clean baseline.

Writes both runs (rldk_engine.devtools.fixtures) under test_artifacts/comprehensive_demo/, analyses
them, prints the component health side by side, and writes
comprehensive_ppo_forensics_demo/comprehensive_analysis.json (the doctored run) plus its
metrics.csv, health_timeline.csv and summary.csv into comprehensive_ppo_monitor_demo/.
Exit 0 iff the doctored run scores clearly below the clean one (as designed).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from rldk_engine.devtools.fixtures import kl_spike_run, scenario_run, write_run  # noqa: E402
from rldk_engine.forensics.analyze import COMPONENTS, analyze_run, write_analysis  # noqa: E402
from rldk_engine.ingest.readers import read_run  # noqa: E402

JSON_DIR = Path("comprehensive_ppo_forensics_demo")
CSV_DIR = Path("comprehensive_ppo_monitor_demo")
RUNS_DIR = Path("test_artifacts") / "comprehensive_demo"


def side_by_side(doctored: dict, clean: dict) -> Table:
    table = Table(title="rldk comprehensive PPO forensics")
    table.add_column("component")
    table.add_column("doctored (KL spike)", justify="right")
    table.add_column("clean baseline", justify="right")
    table.add_column("doctored: weakest check", overflow="fold")

    def cell(a: dict, name: str) -> str:
        sec = a["components"][name]
        return f"{sec['health']:.2f}" if sec["available"] else "-"

    for name in COMPONENTS:
        sec = doctored["components"][name]
        weakest = min(sec["scores"].items(), key=lambda kv: kv[1]) if sec.get("scores") else None
        note = f"{weakest[0]} {weakest[1]:.2f}" if weakest and weakest[1] < 1 else "-"
        table.add_row(name, cell(doctored, name), cell(clean, name), note)
    table.add_section()
    for key in ("component_score", "overall", "stability"):
        table.add_row(key, f"{doctored[key]:.2f}", f"{clean[key]:.2f}", "")
    return table


def main() -> int:
    doctored_dir = write_run(kl_spike_run(0), RUNS_DIR / "logs_doctored_kl_spike").parent
    clean_dir = write_run(scenario_run("ppo", "clean", 0, 1000), RUNS_DIR / "logs_clean").parent
    doctored = write_analysis(read_run(doctored_dir), JSON_DIR, csv_dir=CSV_DIR)
    clean = analyze_run(read_run(clean_dir))
    console = Console()
    console.print(side_by_side(doctored, clean))
    kl = doctored["components"]["kl"]["evidence"]
    adv = doctored["components"]["advantages"]["evidence"]
    console.print(f"KL target {kl['target']} ({kl['mode']}), inside envelope {kl['inside_fraction']:.0%}, "
                  f"controller responsiveness {kl.get('responsiveness')}; advantage bias peak "
                  f"{adv['peak_block_bias']}")
    console.print(f"wrote {JSON_DIR}/comprehensive_analysis.json and {CSV_DIR}/"
                  "{metrics,health_timeline,summary}.csv")
    ok = doctored["component_score"] <= 0.75 and clean["component_score"] >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
