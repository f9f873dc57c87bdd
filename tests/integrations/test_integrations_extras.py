"""Optional extras stay optional: nothing heavy at import, clear messages when absent."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_rldk_engine_imports_no_optional_extra():
    code = ("import sys, rldk_engine, rldk_engine.integrations, rldk_engine.ingest.readers, "
            "rldk_engine.forensics.scan, rldk_engine.live.monitor, rldk_engine.cli; "
            "print(sorted(m for m in ('transformers', 'wandb', 'ray', 'torch') if m in sys.modules))")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_hf_callback_without_transformers_names_the_extra():
    out = _python("import sys; sys.modules['transformers'] = None\n"
                  "from rldk_engine.integrations.hf import RLDKCallback")
    assert out.returncode != 0
    assert "needs the optional 'hf' extra (pip install 'rldk[hf]')" in out.stderr
