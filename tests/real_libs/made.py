"""Shared by make_sb3.py and make_trl.py: run a training script, keep its log, write PROVENANCE.md.

label.json is NOT written here: it is written by hand from the numbers of the finished run
(a re-made run with the same seed on CPU gives the same numbers; check before trusting it).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
MADE = HERE.parent / "data" / "real_made"
PACKAGES = ("stable-baselines3", "gymnasium", "trl", "transformers", "datasets", "tokenizers",
            "accelerate", "torch", "numpy")


def versions(names: tuple[str, ...]) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def make(name: str, script: str, args: list[str], keep: dict[str, str], packages: tuple[str, ...],
         what: str) -> Path:
    """Run `script ARGS` (OUT in ARGS is replaced by a temp folder) and keep files under MADE/name.

    keep maps a path inside the temp folder to the name it gets in the run folder.
    """
    folder = MADE / name
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        real_args = [tmp if a == "OUT" else a for a in args]
        started = time.time()
        result = subprocess.run([sys.executable, str(HERE / script), *real_args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-3000:])
            raise SystemExit(f"{name}: {script} exited {result.returncode}")
        for source, target in keep.items():
            shutil.copy(Path(tmp) / source, folder / target)
    shown = " ".join(["python", f"tests/real_libs/{script}", *args])
    (folder / "PROVENANCE.md").write_text(
        f"# {name}\n\n"
        "Made with the real library on this project's machine (not downloaded), by\n"
        f"`PYTHONPATH=. python tests/real_libs/{Path(sys.argv[0]).name} --only {name}`.\n\n"
        f"- What: {what}\n"
        f"- Command: `{shown}` (OUT = a temporary folder)\n"
        f"- Files kept: {', '.join(f'`{t}` (from OUT/{s})' for s, t in keep.items())}\n"
        f"- Library versions: {versions(packages)}\n"
        f"- Python {platform.python_version()}, {platform.system()} {platform.machine()}, CPU only, "
        f"1 torch thread; made {time.strftime('%Y-%m-%d')} in {time.time() - started:.0f} s\n"
        "- Licence: made by this project (same licence as the repository).\n"
        "- Label: `label.json`, written by hand from the numbers in the kept log.\n")
    print(f"made {folder}")
    return folder


def main(runs: dict, argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated run names: " + ",".join(runs))
    args = parser.parse_args(argv)
    for name, spec in runs.items():
        if args.only is None or name in args.only.split(","):
            make(name, **spec)
    return 0
