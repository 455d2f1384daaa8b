"""`WorkbenchApp`: chat panes side by side, one prompt box, live graphs, the concurrency slider.

The app owns the actors it opens (starting them, watching them with a supervisor, stopping them on
exit), samples their memory once a second for the graphs and the session journal, and journals the
session as it happens through `SessionRecorder`. Models never run on the UI thread: actors run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from workbench.actors.actor import Reply
from workbench.actors.limit import ConcurrencyLimit, global_limit
from workbench.actors.supervisor import Supervisor
from workbench.app.discovery import DEFAULT_SPECS, ollama_specs, openai_specs
from workbench.app.graph_data import GraphData, memory_label
from workbench.app.settings import Settings, load_settings, save_settings
from workbench.app.slots import ActorFactory, ActorSlot, build_slot
from workbench.app.themes import load_themes
from workbench.app.widgets.chat_pane import ChatPane
from workbench.app.widgets.concurrency_slider import ConcurrencySlider
from workbench.app.widgets.graphs import GraphsPanel
from workbench.app.widgets.prompt_box import PromptBox, attachment_text
from workbench.metrics.sampler import ResourceSampler
from workbench.metrics.streamlog import StreamLog
from workbench.runtimes.base import ReadReceipt, TextReply
from workbench.runtimes.types import ChatMessage
from workbench.sessions.recorder import SessionRecorder
from workbench.sessions.schema import PaneRecord
from workbench.sessions.store import default_sessions_dir

log = logging.getLogger(__name__)
MAX_PANES = 6


class WorkbenchApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "workbench"
    BINDINGS = [
        # the prompt box has the same keys (handled in order with the keys typed before them);
        # these serve while something else on the main screen has focus
        Binding("ctrl+t,alt+enter", "send_all", "Send to all", id="prompt.send_all"),
        Binding("ctrl+r", "read_context(False)", "As context", id="prompt.read", show=False),
        Binding("alt+r", "read_context(True)", "Context to all", id="prompt.read_all", show=False),
        Binding("escape", "cancel", "Cancel", id="pane.cancel"),
        Binding("alt+right", "select_pane(1)", "Next pane", id="pane.next", key_display="alt+→"),
        Binding("alt+left", "select_pane(-1)", "Prev pane", id="pane.prev", show=False),
        Binding("ctrl+n", "add_pane", "Add pane", id="pane.add"),
        Binding("f2", "show_actors", "Actors", id="actors.show"),
        Binding("ctrl+s", "save_session", "Save", id="session.save"),
        Binding("ctrl+o", "browse_sessions", "Sessions", id="session.browse"),
        Binding("ctrl+g", "toggle_graphs", "Graphs", id="graphs.toggle"),
        Binding("ctrl+b", "benchmark", "Benchmark", id="app.benchmark"),
        Binding("f3", "compare_answers", "Compare answers", id="app.compare_answers"),
    ]

    def __init__(
        self,
        actor_specs: Sequence[str] = (),
        sessions_dir: str | Path | None = None,
        theme: str | None = None,
        *,
        actor_factory: ActorFactory | None = None,
        discover_ollama: bool | None = None,
        sample_interval_s: float | None = 1.0,
        graph_interval_s: float = 1.0,
        limit: ConcurrencyLimit | None = None,
        settings_path: Path | None = None,
        own_actors: bool = True,
    ) -> None:
        """`actor_factory` builds actors from specs (tests inject one); with `own_actors` False the
        app leaves the actors running on exit (a test's shared, already loaded model)."""
        super().__init__()
        specs = list(actor_specs) or list(DEFAULT_SPECS)
        self.discover_ollama = (not actor_specs) if discover_ollama is None else discover_ollama
        self.actor_factory = actor_factory
        self.own_actors = own_actors
        self.sessions_dir = Path(sessions_dir) if sessions_dir else default_sessions_dir()
        self.requested_theme = theme
        self.settings_path = settings_path
        self.settings: Settings = load_settings(settings_path)
        self.limit = limit if limit is not None else global_limit()
        self.slots: list[ActorSlot] = [build_slot(spec, actor_factory) for spec in specs[:MAX_PANES]]
        self.graph_data = GraphData()
        self.sample_interval_s = sample_interval_s
        self.graph_interval_s = graph_interval_s
        self.sampler = ResourceSampler(interval_s=sample_interval_s or 1.0)
        self.supervisor = Supervisor()
        self.stream_log = StreamLog()  # every actor's recent messages and streams, for the actors screen
        self.recorder: SessionRecorder | None = None
        self.selected_pane_id: str | None = self.slots[0].id if self.slots else None
        self._started_at = time.monotonic()
        self._closed = False
        self._theme_problems: list[str] = []

    # ----- layout --------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="panes"):
            for slot in self.slots:
                yield ChatPane(slot, title=self.label(slot))
        yield GraphsPanel(self.graph_data, interval_s=self.graph_interval_s)
        with Horizontal(id="controls"):
            yield PromptBox()
            yield ConcurrencySlider(self.limit)
        yield Static("", id="notice", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._register_themes()
        self.stream_log.install()
        self.recorder = SessionRecorder(self.sessions_dir, "", [self.pane_record(slot) for slot in self.slots])
        for pane in self.panes:
            self._bind(pane)
        self._mark_selected()
        self.query_one(PromptBox).focus()
        if self.sample_interval_s:
            self.set_interval(self.sample_interval_s, self.sample_resources)
        if self.discover_ollama:
            self.add_ollama_panes()
        for problem in self._theme_problems:
            self.notify(problem, severity="warning")
        self._watch_terminal()

    # ----- the terminal going away --------------------------------------------------------------------
    def _watch_terminal(self) -> None:
        """Quit, closing workers and the session journal, when the terminal hangs up or goes away.

        A SIGHUP reaches us only when we lead the terminal's session or its leader passes it on:
        under `make run` in tmux, killing tmux left make (the session leader) waiting and the app
        without a terminal, where Textual's input thread spun a core at 100% for as long as it
        lived. So a SIGHUP quits, and once a second the terminal is checked as well."""
        if self.is_headless:
            return
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._terminal_gone)
        self.set_interval(1.0, self._check_terminal)

    def _check_terminal(self) -> None:
        stdin = sys.__stdin__
        try:
            os.tcgetpgrp(stdin.fileno())  # EIO once the terminal hung up; ENOTTY if stdin is no terminal
        except OSError as error:
            if error.errno != errno.ENOTTY:
                self._terminal_gone()
        except (AttributeError, ValueError):  # stdin closed or replaced
            self._terminal_gone()

    def _terminal_gone(self) -> None:
        log.warning("the terminal went away: quitting")
        self.exit(return_code=1)

    # ----- panes --------------------------------------------------------------------------------------
    @property
    def panes(self) -> list[ChatPane]:
        return list(self.query("#panes > ChatPane").results(ChatPane))

    def label(self, slot: ActorSlot) -> str:
        index = next((n for n, s in enumerate(self.slots, 1) if s is slot), len(self.slots) + 1)
        return f"{index} {slot.runtime}"

    def pane_record(self, slot: ActorSlot) -> PaneRecord:
        return PaneRecord(id=slot.id, spec=slot.spec, title=self.label(slot))

    def pane(self, pane_id: str) -> ChatPane:
        return self.query_one(f"#{pane_id}", ChatPane)

    @property
    def selected_pane(self) -> ChatPane | None:
        panes = self.panes
        return next((p for p in panes if p.id == self.selected_pane_id), panes[0] if panes else None)

    def _bind(self, pane: ChatPane) -> None:
        """Start the pane's actor and wire it to the supervisor, sampler and session journal."""
        pane.on_sent = self._record_prompt
        pane.on_read = self._record_read
        pane.on_forget = self._record_forget
        actor = pane.actor
        if actor is None:
            return
        self.supervisor.watch(actor)
        self.sampler.watch(pane.slot.id, actor.memory_target)
        if self.recorder is not None:
            self.recorder.attach(pane.slot.id, actor)
        actor.start()

    async def open_pane(self, spec: str) -> ChatPane | None:
        """Add a pane on `spec` (from the picker or Ollama discovery); None when six are open."""
        if len(self.slots) >= MAX_PANES:
            self.notify(f"at most {MAX_PANES} panes; close one first", severity="warning")
            return None
        slot = build_slot(spec, self.actor_factory)
        self.slots.append(slot)
        pane = ChatPane(slot, title=self.label(slot))
        await self.query_one("#panes", Horizontal).mount(pane)
        if self.recorder is not None:
            self.recorder.add_pane(self.pane_record(slot))
        self._bind(pane)
        return pane

    @work(exclusive=True, group="ollama")
    async def add_ollama_panes(self) -> None:
        specs, notice = await ollama_specs()
        more, more_notice = await openai_specs()  # servers in WORKBENCH_OPENAI_URLS
        for spec in specs + more:
            await self.open_pane(spec)
        self.show_notice(" ".join(text for text in (notice, more_notice) if text))

    def show_notice(self, text: str) -> None:
        """A one-line notice above the footer (how to connect Ollama, say); empty hides it."""
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.set_class(bool(text), "shown")

    def _record_prompt(self, pane: ChatPane, message: ChatMessage, reply: TextReply) -> None:
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.record_prompt(pane.slot.id, message, correlation_id=reply.correlation_id)

    def _record_read(self, pane: ChatPane, message: ChatMessage, reply: Reply[ReadReceipt]) -> None:
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.record_prompt(pane.slot.id, message, correlation_id=reply.correlation_id, operation="read")

    def _record_forget(self, pane: ChatPane, reply: Reply[ReadReceipt]) -> None:
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.record_prompt(pane.slot.id, ChatMessage(role="user", content=""),
                                        correlation_id=reply.correlation_id, operation="forget")

    def action_forget_context(self) -> None:
        if (pane := self.selected_pane) is not None:
            pane.forget()

    def _mark_selected(self) -> None:
        selected = self.selected_pane
        for pane in self.panes:
            pane.set_class(pane is selected, "active")

    @on(ChatPane.Selected)
    def _pane_selected(self, event: ChatPane.Selected) -> None:
        self.selected_pane_id = event.pane.id
        self._mark_selected()

    @on(ChatPane.Finished)
    def _reply_finished(self, event: ChatPane.Finished) -> None:
        if event.metrics is not None:
            self.graph_data.add_request(event.pane.title, self.elapsed(), event.metrics)

    def elapsed(self) -> float:
        return time.monotonic() - self._started_at

    # ----- sending ------------------------------------------------------------------------------------
    @on(PromptBox.Send)
    def _send(self, event: PromptBox.Send) -> None:
        targets = self.panes if event.to_all else [p for p in [self.selected_pane] if p is not None]
        if event.as_context:
            try:
                text = attachment_text(event.text)
            except (ValueError, OSError) as error:
                self.notify(f"not read as context: {error}", severity="error")
                return
            for pane in targets:
                pane.read(text)
            return
        for pane in targets:
            pane.send(event.text)

    # The app's prompt bindings act on the main screen's prompt box: on another screen they would
    # take its text away or, had that screen no key of its own, steal the key from it.
    PROMPT_ACTIONS: ClassVar[frozenset[str]] = frozenset({"send_all", "read_context"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.PROMPT_ACTIONS and len(self.screen_stack) > 1:
            return False  # not handled here: the key goes on to the screen on top
        return True

    def action_send_all(self) -> None:
        self.query_one(PromptBox).take(to_all=True)

    def action_read_context(self, to_all: bool) -> None:
        """The prompt box's text (or the file `@PATH`) as context for the selected pane or all panes."""
        self.query_one(PromptBox).take(to_all=to_all, as_context=True)

    def action_cancel(self) -> None:
        pane = self.selected_pane
        cancelled = pane.cancel() if pane is not None else 0
        if not cancelled:
            cancelled = sum(p.cancel() for p in self.panes)
        if cancelled:
            self.notify(f"cancelled {cancelled} request{'s' if cancelled > 1 else ''}")

    def action_select_pane(self, step: int) -> None:
        panes = self.panes
        if not panes:
            return
        current = self.selected_pane
        index = panes.index(current) if current in panes else 0
        self.selected_pane_id = panes[(index + step) % len(panes)].id
        self._mark_selected()

    # ----- resources ------------------------------------------------------------------------------------
    def sample_resources(self) -> None:
        """Read each actor's memory once (a few /proc reads): graphs and journal both get it."""
        taken = self.sampler.sample_once()
        t = self.elapsed()
        for pane in self.panes:
            sample = taken.get(pane.slot.id)
            if sample is None:
                continue
            self.graph_data.add_memory(self.memory_label(pane), t, sample.rss_bytes)
            if self.recorder is not None and not self.recorder.closed:
                self.recorder.record_sample(pane.slot.id, sample)

    @staticmethod
    def memory_label(pane: ChatPane) -> str:
        """The pane's memory series label (a shared server tree says so)."""
        return memory_label(pane.title, pane.actor.memory_target() if pane.actor is not None else None)

    def action_toggle_graphs(self) -> None:
        graphs = self.query_one(GraphsPanel)
        graphs.display = not graphs.display

    # ----- actor control -----------------------------------------------------------------------------------
    async def stop_actor(self, pane: ChatPane) -> None:
        if pane.actor is not None:
            await pane.actor.stop(drain=False)
            pane.refresh_header()

    async def restart_actor(self, pane: ChatPane) -> None:
        if pane.actor is not None:
            await self.supervisor.restart(pane.actor)
            pane.refresh_header()

    def cancel_actor(self, pane: ChatPane) -> int:
        return pane.cancel()

    def action_show_actors(self) -> None:
        from workbench.app.screens.actors import ActorsScreen

        self.push_screen(ActorsScreen())

    def action_add_pane(self) -> None:
        from workbench.app.screens.actor_picker import ActorPicker

        async def chosen(spec: str | None) -> None:
            if spec:
                await self.open_pane(spec)

        self.push_screen(ActorPicker(), chosen)

    # ----- sessions ------------------------------------------------------------------------------------
    def action_save_session(self) -> None:
        from workbench.app.screens.save_dialog import SaveDialog

        if self.recorder is not None:
            self.push_screen(SaveDialog(self.recorder))

    def action_browse_sessions(self) -> None:
        from workbench.app.screens.session_browser import SessionBrowser

        hide = self.recorder.journal_path if self.recorder is not None else None
        self.push_screen(SessionBrowser(self.sessions_dir, hide=hide))

    # ----- benchmarks ------------------------------------------------------------------------------------
    def action_benchmark(self) -> None:
        from workbench.app.screens.benchmark import BenchmarkScreen

        actors = [pane.actor for pane in self.panes if pane.actor is not None]
        self.push_screen(BenchmarkScreen(actors, self.sessions_dir))

    def action_compare_answers(self) -> None:
        """The answers of the panes to a prompt they all got, aligned, divergence marked."""
        from workbench.app.screens.answers import AnswersScreen, shared_prompts

        shared = shared_prompts([(pane.title, pane.history) for pane in self.panes])
        if not shared:
            self.notify("no prompt has answers from two panes yet: send one to all (ctrl+t) first",
                        severity="warning")
            return
        self.push_screen(AnswersScreen(shared))

    # ----- command palette -----------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Add pane", "Open a pane on another runtime or model", self.action_add_pane)
        yield SystemCommand("Actors", "Status of every actor: stop, restart, cancel", self.action_show_actors)
        yield SystemCommand("Read as context (all panes)", "Give the prompt box's text, or @FILE, to every pane "
                            "as context, without asking", lambda: self.action_read_context(True))
        yield SystemCommand("Forget context", "The selected pane's actor drops the context it has read",
                            self.action_forget_context)
        yield SystemCommand("Save session", "Save this session under a name", self.action_save_session)
        yield SystemCommand("Browse sessions", "Play back or re-run a saved session", self.action_browse_sessions)
        yield SystemCommand("Toggle graphs", "Show or hide the memory and latency graphs", self.action_toggle_graphs)
        yield SystemCommand("Benchmark", "Benchmark the panes' actors; open saved runs", self.action_benchmark)
        yield SystemCommand("Compare answers", "One prompt's answers across panes: first divergence, similarity, "
                            "accuracy", self.action_compare_answers)
        for pane in self.panes:
            if pane.actor is None:
                continue
            yield SystemCommand(f"Stop {pane.title}", f"Stop actor {pane.slot.spec} (drops queued work)",
                                lambda pane=pane: self.run_worker(self.stop_actor(pane)))
            yield SystemCommand(f"Restart {pane.title}", f"Restart actor {pane.slot.spec}",
                                lambda pane=pane: self.run_worker(self.restart_actor(pane)))
            yield SystemCommand(f"Cancel {pane.title}", f"Cancel {pane.slot.spec}'s running and queued requests",
                                lambda pane=pane: self.cancel_actor(pane))

    # ----- themes -------------------------------------------------------------------------------------------
    def _register_themes(self) -> None:
        themes, self._theme_problems = load_themes()
        for theme in themes:
            self.register_theme(theme)
        wanted = self.requested_theme or self.settings.theme
        if wanted and wanted in self.available_themes:
            self.theme = wanted
        elif wanted:
            self._theme_problems.append(f"unknown theme {wanted!r}; using {self.theme}")
        self.theme_changed_signal.subscribe(self, self._remember_theme)

    def _remember_theme(self, theme: object) -> None:
        name = getattr(theme, "name", None)
        if name and name != self.settings.theme:
            self.settings = self.settings.model_copy(update={"theme": name})
            try:
                save_settings(self.settings, self.settings_path)
            except OSError as error:
                self.notify(f"could not remember the theme: {error}", severity="warning")

    # ----- shutdown ---------------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        await self.shutdown()
        self.exit(0)

    async def shutdown(self) -> None:
        """Cancel requests, close the journal and stop every actor (freeing their models)."""
        if self._closed:
            return
        self._closed = True
        self.stream_log.close()
        for pane in self.panes:
            pane.cancel()
        if self.recorder is not None:
            self.recorder.close()
        if self.own_actors:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.supervisor.stop_all(drain=False), timeout=10)

    async def on_unmount(self) -> None:
        await self.shutdown()
