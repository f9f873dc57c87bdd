"""Optional integrations: each module imports its third-party package lazily.

- `rldk_engine.integrations.hf`: `RLDKCallback` for transformers/TRL Trainers (extra `hf`).
- `rldk_engine.integrations.ray_scan`: the `scan --backend ray` runner (extra `ray`).
- W&B run folders are read by `rldk_engine.ingest.readers` (format "wandb", extra `wandb`).

Nothing heavy is imported here, so `import rldk_engine.integrations` stays cheap.
"""

from __future__ import annotations

from rldk_engine.errors import EXTRAS, missing_extra_message

__all__ = ["EXTRAS", "missing_extra_message"]
