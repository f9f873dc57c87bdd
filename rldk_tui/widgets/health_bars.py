"""A selected run's component health (rldk_engine.forensics.analyze) as one bar per component.

The five components are always listed in the same order; one whose metrics the run
does not log shows "n/a" instead of a bar (a missing bar is not a healthy one).
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

# The engine's names (rldk_engine.forensics.analyze.COMPONENTS) and how the bars label them.
COMPONENT_LABELS = {
    "kl": "KL",
    "gradients": "gradients",
    "advantages": "advantages",
    "reward": "reward",
    "length": "length",
}
BAR_WIDTH = 20


def all_components(bars: list[tuple[str, float]]) -> list[tuple[str, float | None]]:
    """`component_bars` lists only the available components: put the absent ones back
    as None, in the engine's fixed order."""
    known = dict(bars)
    return [(name, known.get(name)) for name in COMPONENT_LABELS]


def health_style(health: float) -> str:
    if health >= 0.9:
        return "green"
    if health >= 0.6:
        return "yellow"
    return "bold red"


def bars_text(components: list[tuple[str, float | None]], width: int = BAR_WIDTH) -> Text:
    label_width = max(len(label) for label in COMPONENT_LABELS.values())
    lines = []
    for name, health in components:
        line = Text(f"{COMPONENT_LABELS.get(name, name):<{label_width}} ")
        if health is None:
            line.append("n/a", style="dim")
        else:
            clamped = min(max(health, 0.0), 1.0)
            filled = round(clamped * width)
            style = health_style(clamped)
            line.append("█" * filled, style=style)
            line.append("░" * (width - filled), style="dim")
            line.append(f" {health:.2f}", style=style)
        lines.append(line)
    return Text("\n").join(lines)


class HealthBars(Widget):
    """`show(bars)` with `component_bars(analysis)`; `show_message` while loading/failed."""

    DEFAULT_CSS = """
    HealthBars { width: 42; height: 7; border: round $accent 50%; padding: 0 1; }
    """

    components: reactive[tuple | None] = reactive(None)
    message: reactive[str] = reactive("select a run")

    def show(self, bars: list[tuple[str, float]]) -> None:
        self.components = tuple(all_components(bars))

    def show_message(self, message: str) -> None:
        self.components = None
        self.message = message

    def render(self) -> Text:
        if self.components is None:
            return Text(self.message, style="dim")
        width = max(5, min(BAR_WIDTH, self.size.width - 18))
        return bars_text(list(self.components), width)
