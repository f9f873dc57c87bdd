"""Optional integrations: each module imports its third-party package lazily.

- `rldk_engine.integrations.hf`: `RLDKCallback` for transformers/TRL Trainers (extra `hf`).
- `rldk_engine.integrations.ray_scan`: the `scan --backend ray` runner (extra `ray`).
- W&B run folders are read by `rldk_engine.readers` (format "wandb", extra `wandb`).

Nothing heavy is imported here, so `import rldk_engine.integrations` stays cheap.
"""

from __future__ import annotations

EXTRAS = {"hf": "transformers", "wandb": "wandb", "ray": "ray"}


def missing_extra_message(extra: str, what: str) -> str:
    """The one-line message for an absent optional dependency."""
    return f"{what} needs the optional '{extra}' extra (pip install 'rldk[{extra}]')"
