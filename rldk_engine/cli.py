"""`rldk-engine`: the headless CLI. Imports stay light; each command imports its work lazily."""

from __future__ import annotations

import typer

from .cli_inspect import inspect_command

app = typer.Typer(
    name="rldk-engine",
    help="RL Debug Kit engine: ingest, live guardrails, forensics and determinism checks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("inspect")(inspect_command)


@app.callback()
def _root() -> None:
    """RL Debug Kit engine: ingest, live guardrails, forensics and determinism checks."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
