"""The actor picker: which runtimes and models can run here (and why the others cannot), and a spec box.

Availability checks can touch the network (an Ollama server), so they run in a worker; the screen
opens at once and fills in as they answer.
"""

from __future__ import annotations

import importlib.util

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from workbench.errors import SpecError
from workbench.runtimes.registry import RuntimeReport, list_runtimes, parse_spec


def installed_chat_models() -> list[str]:
    try:
        from workbench.models.catalog import installed_models
    except ImportError:
        return ["smollm2"]
    return [entry.name for entry in installed_models() if entry.kind == "chat"] or ["smollm2"]


def suggestions(
    reports: list[RuntimeReport], models: list[str], ray: bool = False
) -> tuple[list[str], list[str]]:
    """Specs to offer (available in-process runtimes × installed models, and with `ray` the same
    placed on Ray: `torch:smollm2@ray`), and lines on the rest."""
    offered: list[str] = []
    unavailable: list[str] = []
    for report in reports:
        if not report.availability.available:
            unavailable.append(f"{report.name}: {report.availability.reason or 'not available'}")
        elif report.family == "in-process":
            offered += [f"{report.name}:{model}" for model in models]
            offered += [f"{report.name}:{model}@ray" for model in models] if ray else []
        else:
            offered.append(f"{report.name}:MODEL")
    return offered, unavailable


class ActorPicker(ModalScreen[str | None]):
    DEFAULT_CSS = """
    ActorPicker { align: center middle; }
    ActorPicker > Vertical { width: 90; height: auto; max-height: 90%; border: round $primary;
                             background: $surface; padding: 0 1; }
    ActorPicker OptionList { height: auto; max-height: 12; }
    ActorPicker #unavailable { color: $text-muted; }
    ActorPicker #problem { color: $text-error; }
    """
    BINDINGS = [Binding("escape", "close", "Cancel", id="picker.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Open a pane — pick one, or type runtime:model[@host] and press Enter "
                         "(in-process runtimes: @thread, @process or @ray places the model)")
            yield Input(placeholder="transformers:smollm2", id="spec")
            yield OptionList(id="choices")
            yield Static("checking runtimes…", id="unavailable", markup=False)
            yield Static("", id="problem", markup=False)

    def on_mount(self) -> None:
        self.query_one("#spec", Input).focus()
        self.check_runtimes()

    @work(exclusive=True)
    async def check_runtimes(self) -> None:
        ray = importlib.util.find_spec("ray") is not None  # the ray placement's extra is installed
        offered, unavailable = suggestions(await list_runtimes(), installed_chat_models(), ray)
        self.query_one("#choices", OptionList).add_options([Option(spec, id=spec) for spec in offered])
        text = "Not available here:\n" + "\n".join(f"  {line}" for line in unavailable) if unavailable else ""
        self.query_one("#unavailable", Static).update(text)

    @on(OptionList.OptionSelected)
    def picked(self, event: OptionList.OptionSelected) -> None:
        spec = str(event.option.prompt)
        if spec.endswith(":MODEL"):
            box = self.query_one("#spec", Input)
            box.value = spec[: -len("MODEL")]
            box.focus()
            return
        self.dismiss(spec)

    @on(Input.Submitted)
    def typed(self, event: Input.Submitted) -> None:
        try:
            spec = str(parse_spec(event.value))
        except SpecError as error:
            self.query_one("#problem", Static).update(str(error))
            return
        self.dismiss(spec)

    def action_close(self) -> None:
        self.dismiss(None)
