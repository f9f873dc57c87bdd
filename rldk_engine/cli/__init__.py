"""Command-line layer: one module per `rldk-engine` command, the `rldk` compatibility app beside them.

`main` imports Typer and the command modules only when called, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    from rldk_engine.cli.engine import main as run_app

    run_app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from rldk_engine.cli.engine import app

        return app
    raise AttributeError(name)
