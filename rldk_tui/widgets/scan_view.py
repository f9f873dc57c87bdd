"""The Scan tab: scan paths in a worker, list runs, their anomalies, and plot one."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, ProgressBar
from textual.worker import get_current_worker

from rldk_tui.safe_text import plain
from rldk_tui.widgets.health_bars import HealthBars, health_style
from rldk_tui.widgets.window_plot import WindowPlot

SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
RUN_COLUMNS = ("health", "worst finding", "run", "findings", "steps", "format")


def worst_anomaly(run: dict) -> dict | None:
    """The most severe finding, the longest of those on a tie."""
    anomalies = run.get("anomalies") or []
    return max(anomalies, default=None, key=lambda a: (
        SEVERITY_RANK.get(a.get("severity"), 0),
        (a.get("end_step") or 0) - (a.get("start_step") or 0)))


def run_order(run: dict) -> tuple:
    """Worst first: lowest health, then the most severe finding; unscored runs last
    (a stable sort: ties keep the scan's order)."""
    health = (run.get("health") or {}).get("overall")
    worst = worst_anomaly(run)
    return (health is None, health if health is not None else 2.0,
            -SEVERITY_RANK.get(str((worst or {}).get("severity")), 0))


def run_row(run: dict) -> tuple[Text, ...]:
    """Health and the worst finding lead; every cell is short enough for 120 columns."""
    severities = [a.get("severity") for a in run.get("anomalies", [])]
    health = (run.get("health") or {}).get("overall")
    counts = " ".join(f"{severities.count(s)}{s[0]}" for s in ("critical", "warning", "info")
                      if severities.count(s)) or "none"
    worst = worst_anomaly(run)
    if worst is None:
        finding = Text("no anomaly" if not run.get("errors") else "input errors only",
                       style="green" if not run.get("errors") else "yellow")
    else:
        finding = plain(f"{worst.get('rule', '?')} {worst.get('metric', '')} "
                        f"{worst.get('start_step')}–{worst.get('end_step')}",
                        SEVERITY_STYLE.get(str(worst.get("severity")), ""))
    if health is None:
        score = Text("--", style="dim")
    else:
        score = Text(f"{health:.2f}", style=health_style(health))
    name = str(run.get("run_id", "?"))
    return (
        score,
        finding,
        plain(name if len(name) <= 28 else name[:27] + "…"),
        Text(counts),
        Text(str(run.get("n_steps", "?"))),
        plain(run.get("format", "?")),
    )


def anomaly_row(anomaly: dict) -> tuple[Text, ...]:
    severity = str(anomaly.get("severity", ""))
    return (
        plain(severity, SEVERITY_STYLE.get(severity, "")),
        plain(anomaly.get("rule", "")),
        plain(anomaly.get("metric", "")),
        Text(f"{anomaly.get('start_step')}–{anomaly.get('end_step')}"),
        plain(anomaly.get("message", "")),
    )


def scan(paths: list[str], preset: str = "auto", progress=None) -> dict:
    from rldk_engine.forensics.scan import scan_paths  # heavy (numpy): imported in the worker

    return scan_paths(paths, preset=preset, jobs=1, progress=progress)


def component_health(source: str, preset: str = "auto") -> list[tuple[str, float]]:
    """(component, health) of the run's available components (rldk_engine.forensics.analyze)."""
    from rldk_engine.forensics.analyze import analyze_run, component_bars
    from rldk_engine.ingest.readers import read_run

    return component_bars(analyze_run(read_run(source), preset=preset))


def load_series(source: str, metric: str) -> tuple[list[int], list[float]]:
    from rldk_engine.ingest.readers import read_run

    run = read_run(source)
    column = run.get(metric)
    if column is None:
        return [], []
    return [int(s) for s in run.steps], [float(v) for v in column]


class ScanView(Vertical):
    def __init__(self, paths: list[str] | None = None, preset: str = "auto",
                 autostart: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.paths = list(paths or [])
        self.preset = preset
        self.autostart = autostart
        self.report: dict | None = None
        self.selected_run: int | None = None
        self._health: dict[int, list[tuple[str, float]]] = {}  # per run index, this report
        self._report_id = 0  # a result from an older report's worker is dropped

    def compose(self) -> ComposeResult:
        with Horizontal(id="scan-inputs"):
            yield Input(" ".join(self.paths), placeholder="paths to scan (space separated)",
                        id="scan-paths")
            yield Button("Scan", id="scan-go", variant="primary")
        yield ProgressBar(total=None, show_eta=False, id="scan-progress")
        yield Label("", id="scan-message")
        runs: DataTable[Text] = DataTable(id="scan-runs", cursor_type="row", zebra_stripes=True)
        runs.border_title = "runs, worst first"
        yield runs
        with Horizontal(id="scan-middle"):
            anomalies: DataTable[Text] = DataTable(id="scan-anomalies", cursor_type="row", zebra_stripes=True)
            anomalies.border_title = "anomalies of the selected run"
            yield anomalies
            bars = HealthBars(id="scan-health")
            bars.border_title = "component health"
            yield bars
        yield WindowPlot(id="scan-plot")

    def on_mount(self) -> None:
        self.query_one("#scan-runs", DataTable).add_columns(*RUN_COLUMNS)
        self.query_one("#scan-anomalies", DataTable).add_columns(
            "severity", "rule", "metric", "steps", "message")
        self.query_one("#scan-progress").display = False
        if self.paths and self.autostart:
            self.start_scan(self.paths)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "scan-go":
            self.start_scan(self.query_one("#scan-paths", Input).value.split())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "scan-paths":
            self.start_scan(event.value.split())

    def start_scan(self, paths: list[str]) -> None:
        if not paths:
            self.query_one("#scan-message", Label).update("give at least one path")
            return
        self.paths = paths
        self.query_one("#scan-progress").display = True
        self.query_one("#scan-message", Label).update(plain(f"scanning {' '.join(paths)} …"))
        self.run_scan(paths)

    @work(thread=True, exclusive=True, group="scan")
    def run_scan(self, paths: list[str]) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._show_progress, done, total)

        try:
            report = scan(paths, self.preset, progress)
        except Exception as error:  # noqa: BLE001 - shown as one line, never a traceback
            if not worker.is_cancelled:
                self.app.call_from_thread(self._scan_failed, f"{type(error).__name__}: {error}")
            return
        # A newer scan (exclusive worker) replaced this one: an older report must not
        # overwrite its table when it happens to finish last.
        if not worker.is_cancelled:
            self.app.call_from_thread(self.show_report, report)

    def _show_progress(self, done: int, total: int) -> None:
        self.query_one("#scan-progress", ProgressBar).update(total=total, progress=done)
        self.query_one("#scan-message", Label).update(f"scanning: {done}/{total} runs")

    def _scan_failed(self, message: str) -> None:
        self.query_one("#scan-progress").display = False
        self.query_one("#scan-message", Label).update(plain(f"scan failed: {message}"))

    def show_report(self, report: dict) -> None:
        """Also the entry point for tests and snapshots (inject a report, no scan)."""
        # Worst first: the order the table shows is the order the report is kept in.
        report = {**report, "runs": sorted(report.get("runs", []), key=run_order)}
        self.report = report
        self.selected_run = None
        self._health.clear()
        self._report_id += 1
        self.query_one("#scan-progress").display = False
        runs = report.get("runs", [])
        errors = sum(len(r.get("errors", [])) for r in runs)
        self.query_one("#scan-message", Label).update(
            f"{len(runs)} run(s) scanned" + (f", {errors} input error(s)" if errors else ""))
        table = self.query_one("#scan-runs", DataTable)
        table.clear()
        for index, run in enumerate(runs):
            table.add_row(*run_row(run), key=str(index))
        if runs:
            self.show_anomalies(0)
            table.focus()  # keyboard first: arrows move through runs right away

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.report is None or event.row_key is None or event.row_key.value is None:
            return
        if event.data_table.id == "scan-runs":
            self.show_anomalies(int(event.row_key.value))
        elif event.data_table.id == "scan-anomalies":
            run_index, anomaly_index = map(int, event.row_key.value.split(":"))
            self.plot_anomaly(run_index, anomaly_index)

    def selected_report(self) -> dict:
        if self.report is None:
            raise RuntimeError("no scan report yet")  # only reached from a report's rows
        return self.report

    def show_anomalies(self, run_index: int) -> None:
        table = self.query_one("#scan-anomalies", DataTable)
        table.clear()
        run = self.selected_report()["runs"][run_index]
        self.select_health(run_index)
        for index, anomaly in enumerate(run.get("anomalies", [])):
            table.add_row(*anomaly_row(anomaly), key=f"{run_index}:{index}")

    # -- component health of the selected run, analysed lazily (once per run) -------------
    def select_health(self, run_index: int) -> None:
        self.selected_run = run_index
        bars = self.query_one(HealthBars)
        if run_index in self._health:
            bars.show(self._health[run_index])
            return
        bars.show_message("analysing …")
        self.load_health((self._report_id, run_index),
                         self.selected_report()["runs"][run_index].get("source", ""))

    @work(thread=True, exclusive=True, group="scan-health")
    def load_health(self, key: tuple[int, int], source: str) -> None:
        try:
            bars = component_health(source, self.preset)
        except Exception as error:  # noqa: BLE001 - one line in the pane, never a traceback
            self.app.call_from_thread(self._health_failed, key, f"{error}")
            return
        self.app.call_from_thread(self._health_loaded, key, bars)

    def _health_loaded(self, key: tuple[int, int], bars: list[tuple[str, float]]) -> None:
        report_id, run_index = key
        if report_id != self._report_id:
            return
        self._health[run_index] = bars
        if run_index == self.selected_run:  # the user may have moved on meanwhile
            self.query_one(HealthBars).show(bars)

    def _health_failed(self, key: tuple[int, int], message: str) -> None:
        if key == (self._report_id, self.selected_run):
            self.query_one(HealthBars).show_message(f"no analysis: {message}")

    def plot_anomaly(self, run_index: int, anomaly_index: int) -> None:
        run = self.selected_report()["runs"][run_index]
        anomaly = run["anomalies"][anomaly_index]
        self.load_plot(run.get("source", ""), anomaly)

    @work(thread=True, exclusive=True, group="scan-plot")
    def load_plot(self, source: str, anomaly: dict) -> None:
        # Only reads here; widgets are touched on the UI thread (call_from_thread).
        try:
            steps, values = load_series(source, anomaly.get("metric", ""))
        except Exception as error:  # noqa: BLE001
            steps, values = [], []
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self._plot_failed, f"cannot plot: {error}")
        # A newer selection cancelled this (exclusive) worker: its plot must not land.
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_plot, steps, values, anomaly)

    def _plot_failed(self, message: str) -> None:
        self.query_one("#scan-message", Label).update(plain(message))

    def show_plot(self, steps: list[int], values: list[float], anomaly: dict) -> None:
        window = (int(anomaly.get("start_step", 0)), int(anomaly.get("end_step", 0)))
        title = f"{anomaly.get('metric')} · {anomaly.get('rule')}"
        self.query_one(WindowPlot).show(steps, values, window, title)
