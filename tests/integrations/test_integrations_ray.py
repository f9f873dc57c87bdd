"""`scan --backend ray`: the same report as the process pool, on a local Ray instance."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import REPO
from typer.testing import CliRunner

from rldk_engine.cli import app
from rldk_engine.forensics.backends import ScanOptions
from rldk_engine.forensics.scan import scan_paths
from rldk_engine.integrations.ray_scan import RayBackend, RayUnavailable


def _write_tree(root: Path, n: int = 6) -> Path:
    for i in range(n):
        rows = []
        for step in range(60):
            kl = 0.9 if (i % 2 and 30 <= step < 40) else 0.02
            rows.append(json.dumps({"step": step, "train/kl": kl, "env/reward_mean": step * 0.01,
                                    "objective/entropy": 1.0}))
        folder = root / f"group{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"run{i}.jsonl").write_text("\n".join(rows) + "\n")
    (root / "broken.jsonl").write_text("")  # an unreadable run is an error line on both backends
    return root


def _comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "created"}


def test_ray_backend_gives_the_process_pool_report(tmp_path):
    pytest.importorskip("ray", reason="the 'ray' extra is not installed")
    root = _write_tree(tmp_path / "runs")
    by_process = scan_paths([root], jobs=2)
    seen = []
    by_ray = scan_paths([root], jobs=2, backend="ray", progress=lambda done, total: seen.append((done, total)))
    assert _comparable(by_ray) == _comparable(by_process)
    assert len(by_ray["runs"]) == 6 and len(by_ray["errors"]) == 1
    assert any(a["rule"] == "kl_spike" for run in by_ray["runs"] for a in run["anomalies"])
    assert seen[-1] == (7, 7)


def test_missing_ray_is_a_one_line_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(RayUnavailable, match=r"pip install 'rldk\[ray\]'"):
        RayBackend().run(["x"], ScanOptions(backend="ray"))
    root = _write_tree(tmp_path / "runs", n=1)
    result = CliRunner().invoke(app, ["scan", str(root), "--backend", "ray"])
    assert result.exit_code == 2 and "rldk[ray]" in result.output


def test_unknown_backend_is_rejected(tmp_path):
    result = CliRunner().invoke(app, ["scan", str(tmp_path), "--backend", "spark"])
    assert result.exit_code == 2 and "unknown --backend 'spark'" in result.output


def test_backends_import_no_cycle_and_no_private_names():
    """scan -> backends <- ray_scan: ray_scan never imports scan, nothing private crosses."""
    import ast

    root = REPO / "rldk_engine"
    for rel in ("integrations/ray_scan.py", "forensics/backends.py", "forensics/run_scan.py"):
        tree = ast.parse((root / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "rldk_engine.forensics.scan", rel
                assert not any(a.name.startswith("_") for a in node.names), (rel, node.module)
