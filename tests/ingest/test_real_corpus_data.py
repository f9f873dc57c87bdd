"""The labelled real-log corpus in tests/data/real/: every run folder is usable data.

Each folder holds public log file(s) written by a real trainer, a PROVENANCE.md (source
repository, commit, path, licence) and a label.json in the shared format that
`rldk-engine eval-detectors --real DIR` reads. These tests check the data, not the
detectors: a log the readers cannot load, a label naming a rule that does not exist, or a
failure range outside the run would make every detector figure computed on it meaningless.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import DATA

from rldk_engine.ingest.readers import Source, read_run

CORPUS = DATA / "real"
SIDE_FILES = {"PROVENANCE.md", "label.json"}
# The rule ids of SPEC.md ("Rules"); a rule added later to the rulebook is accepted too.
SPEC_RULES = {
    "kl_spike",
    "kl_controller_drift",
    "approx_kl_high",
    "advantage_bias",
    "entropy_collapse",
    "grad_norm_spike",
    "grad_imbalance",
    "non_finite",
    "reward_hacking",
    "reward_collapse",
    "clip_frac_high",
    "length_explosion",
    "length_collapse",
    "zero_std_groups",
    "value_divergence",
}
SEVERITIES = {"info", "warning", "critical"}
LABEL_KEYS = {"trainer", "format", "healthy", "failures", "notes"}
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 25 * 1024 * 1024


def _known_rules() -> set[str]:
    try:
        from rldk_engine.rulebook import RULES  # lands with the forensics branch
    except ImportError:
        return set(SPEC_RULES)
    return set(SPEC_RULES) | set(RULES)


def _run_dirs() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_dir())


def _log_files(run_dir: Path) -> list[Path]:
    """The log files of a folder (a W&B run folder inside it counts with all its files)."""
    files = (p for p in run_dir.rglob("*") if p.is_file())
    return sorted(p for p in files if p.parent != run_dir or p.name not in SIDE_FILES)


def _wandb_dirs(run_dir: Path) -> list[Path]:
    return sorted(
        p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith(("run-", "offline-run-"))
    )


def _read(run_dir: Path):
    """One Run per folder: a W&B run folder, all TensorBoard event files together, or the single log."""
    wandb_dirs = _wandb_dirs(run_dir)
    if wandb_dirs:
        assert len(wandb_dirs) == 1, f"{run_dir.name}: more than one W&B run folder"
        return read_run(wandb_dirs[0])
    logs = _log_files(run_dir)
    events = [str(p) for p in logs if ".tfevents" in p.name]
    if events:
        return read_run(Source(run_dir.name, tuple(events)))
    assert len(logs) == 1, f"{run_dir.name}: expected one log file, found {[p.name for p in logs]}"
    return read_run(logs[0])


def _label(run_dir: Path) -> dict:
    return json.loads((run_dir / "label.json").read_text(encoding="utf-8"))


RUN_DIRS = _run_dirs()
IDS = [p.name for p in RUN_DIRS]


def test_corpus_is_present_and_small():
    assert RUN_DIRS, f"no run folders under {CORPUS}"
    total = 0
    for run_dir in RUN_DIRS:
        for path in run_dir.iterdir():
            size = path.stat().st_size
            assert size <= MAX_FILE_BYTES, f"{path} is {size} bytes (limit {MAX_FILE_BYTES})"
            total += size
    assert total <= MAX_TOTAL_BYTES, f"corpus is {total} bytes (limit {MAX_TOTAL_BYTES})"


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=IDS)
def test_log_is_readable(run_dir: Path):
    run = _read(run_dir)
    assert run.n_steps >= 5, f"{run_dir.name}: only {run.n_steps} steps read"
    assert not run.errors, f"{run_dir.name}: reader errors {run.errors[:3]}"
    assert run.columns, f"{run_dir.name}: no metric columns"


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=IDS)
def test_provenance_names_repo_commit_and_licence(run_dir: Path):
    text = (run_dir / "PROVENANCE.md").read_text(encoding="utf-8")
    assert re.search(r"https://github\.com/[\w.-]+/[\w.-]+", text), "no source repository URL"
    assert re.search(r"Commit: [0-9a-f]{40}\b", text), "no full commit hash"
    assert re.search(r"Licence: \S", text), "no licence line"
    for log in _log_files(run_dir):
        rel = log.relative_to(run_dir).as_posix()
        assert f"`{rel}`" in text, f"{rel} has no path-in-repository entry"


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=IDS)
def test_label_is_valid_and_inside_the_run(run_dir: Path):
    label = _label(run_dir)
    assert set(label) >= LABEL_KEYS, f"missing keys {LABEL_KEYS - set(label)}"
    assert isinstance(label["healthy"], bool)
    assert isinstance(label["trainer"], str) and label["trainer"]
    assert isinstance(label["format"], str) and label["format"]
    assert isinstance(label["notes"], str) and len(label["notes"]) >= 40, (
        "notes must give the numbers"
    )
    failures = label["failures"]
    assert isinstance(failures, list)
    assert label["healthy"] == (not failures), (
        "healthy runs have no failures, failing runs have some"
    )
    run = _read(run_dir)
    first, last = int(run.steps[0]), int(run.steps[-1])
    known = _known_rules()
    for failure in failures:
        assert failure["rule"] in known, f"{failure['rule']!r} is not a SPEC rule id"
        start, end = failure["start_step"], failure["end_step"]
        assert isinstance(start, int) and isinstance(end, int)
        assert first <= start <= end <= last, (
            f"{failure['rule']} range {start}..{end} outside the run's steps {first}..{last}"
        )
        assert failure.get("min_severity", "warning") in SEVERITIES


def test_readme_lists_every_run():
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    for run_dir in RUN_DIRS:
        assert f"`{run_dir.name}`" in readme, f"{run_dir.name} missing from README.md"


def test_corpus_covers_enough_runs_trainers_and_failures():
    """Issue 15's floor: 25+ runs, 7+ trainer/format pairs, 10+ failing runs, the rest healthy."""
    labels = [_label(run_dir) for run_dir in RUN_DIRS]
    pairs = {(label["trainer"], label["format"]) for label in labels}
    failing = [label for label in labels if not label["healthy"]]
    assert len(labels) >= 25, f"only {len(labels)} runs"
    assert len(pairs) >= 7, f"only {len(pairs)} trainer/format pairs: {sorted(pairs)}"
    assert len(failing) >= 10, f"only {len(failing)} failing runs"
    assert len(labels) - len(failing) >= 10, "too few healthy runs to measure false alarms"
