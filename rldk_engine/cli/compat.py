"""`rldk`: the original kit's commands, verbatim, on top of the same engine functions.

`rldk log-scan` / `rldk forensics log-scan` are `rldk-engine scan`; `rldk doctor` /
`rldk forensics doctor` are `rldk-engine doctor` (writing rldk_reports/ppo_scan.json
and rldk_reports/determinism_card.json); `rldk check-determinism` is
`rldk-engine determinism`. No logic lives here, only the command names.
"""

from __future__ import annotations

import typer

from rldk_engine.cli.analyze import analyze_command
from rldk_engine.cli.determinism import determinism_command
from rldk_engine.cli.fixtures import doctor_command
from rldk_engine.cli.scan import scan_command

app = typer.Typer(
    name="rldk",
    help="RL Debug Kit (compatibility commands of the original kit).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and usage errors: no rich import (start-up time)
)
forensics = typer.Typer(
    name="forensics",
    help="Forensic analysis of finished runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and usage errors: no rich import (start-up time)
)


@app.callback()
def _root() -> None:
    """RL Debug Kit (compatibility commands of the original kit)."""


app.command("log-scan")(scan_command)
app.command("doctor")(doctor_command)
app.command("check-determinism")(determinism_command)
forensics.command("log-scan")(scan_command)
forensics.command("doctor")(doctor_command)
forensics.command("comprehensive")(analyze_command)
app.add_typer(forensics, name="forensics")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
