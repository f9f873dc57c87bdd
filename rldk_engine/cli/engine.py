"""`rldk-engine`: the headless CLI. Imports stay light; each command imports its work lazily."""

from __future__ import annotations

from rldk_engine.cli.analyze import analyze_command
from rldk_engine.cli.determinism import determinism_command
from rldk_engine.cli.fixtures import register as register_forensics_tools
from rldk_engine.cli.inspect import inspect_command
from rldk_engine.cli.monitor import MONITOR_CONTEXT, monitor_command
from rldk_engine.cli.scan import scan_command
from rldk_engine.cli.text import new_app

app = new_app("rldk-engine", "RL Debug Kit engine: ingest, live guardrails, forensics and determinism checks.")


@app.callback()
def _root() -> None:
    """RL Debug Kit engine: ingest, live guardrails, forensics and determinism checks."""


app.command("inspect")(inspect_command)
app.command("monitor", context_settings=MONITOR_CONTEXT)(monitor_command)
app.command("scan")(scan_command)
app.command("analyze")(analyze_command)
app.command("determinism")(determinism_command)
register_forensics_tools(app)  # fixtures, doctor, matrix, eval-detectors


def main() -> None:
    app()


if __name__ == "__main__":
    main()
