"""A chat pane: one actor, its conversation, and the replies streaming into it.

The pane keeps the conversation (the chat history) and sends all of it with each prompt; text given
"as context" is read by the actor (`read`), which keeps it ahead of every later prompt. Each
prompt streams in its own worker on the app's loop; the model itself runs in the actor, off the UI
thread. The pane never fails with its actor: an error is shown under the reply that hit it, and the
next prompt goes out as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from workbench.actors import events
from workbench.actors.actor import ActorState, Reply
from workbench.actors.events import ActorEvent
from workbench.app.slots import ActorSlot
from workbench.app.widgets import css_beside
from workbench.app.widgets.reply_view import ReplyView, describe_metrics
from workbench.errors import MessageCancelled
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.base import ReadReceipt, TextReply
from workbench.runtimes.types import ChatMessage, Chunk, Completion


CONTEXT_SHOWN_CHARS = 600  # a long document is shown by its start; all of it is read


class ChatPane(Vertical, can_focus=True):
    DEFAULT_CSS = css_beside(__file__)

    class Finished(Message):
        """A reply ended: `outcome` is done, error or cancelled; `metrics` when it completed."""

        def __init__(self, pane: ChatPane, reply: TextReply, outcome: str,
                     metrics: RequestMetrics | None, error: str = "") -> None:
            super().__init__()
            self.pane = pane
            self.reply = reply
            self.outcome = outcome
            self.metrics = metrics
            self.error = error

    class Selected(Message):
        """The user picked this pane (focus or click): Enter sends here."""

        def __init__(self, pane: ChatPane) -> None:
            super().__init__()
            self.pane = pane

    def __init__(self, slot: ActorSlot, *, title: str | None = None, read_only: bool = False) -> None:
        super().__init__(id=slot.id)
        self.slot = slot
        self.title = title or slot.spec
        self.read_only = read_only
        self.history: list[ChatMessage] = []
        self.replies: list[TextReply] = []
        self.last_metrics: RequestMetrics | None = None
        self.last_error = ""
        self.runtime_note = ""  # what the runtime says really runs, e.g. "q4" or "fp32, q4 unavailable"
        self._note_asked = False  # once per load
        self._turns = 0
        self._unsubscribe: list[Callable[[], None]] = []
        # Called synchronously as each prompt goes out, before any of its chunks can arrive (the
        # session recorder needs the correlation id first).
        self.on_sent: Callable[[ChatPane, ChatMessage, TextReply], None] | None = None
        # The same for text read as context (operation `read`) and for forgetting it (`forget`).
        self.on_read: Callable[[ChatPane, ChatMessage, Reply[ReadReceipt]], None] | None = None
        self.on_forget: Callable[[ChatPane, Reply[ReadReceipt]], None] | None = None

    @property
    def actor(self):  # noqa: ANN201 - ModelRuntimeActor | None
        return self.slot.actor

    def compose(self) -> ComposeResult:
        yield Static(self.header_text(), classes="pane-header", markup=False)
        with VerticalScroll(classes="log"):
            if self.slot.error:
                yield Static(f"This pane cannot run {self.slot.spec}:\n{self.slot.error}",
                             classes="pane-error", markup=False)

    def on_mount(self) -> None:
        actor = self.actor
        if actor is not None:
            for kind in (events.STATE, events.PROGRESS, events.STARTED, events.ERROR):
                self._unsubscribe.append(actor.on(kind, self._on_actor_event))
            if actor.state == ActorState.IDLE:
                self._ask_runtime_note()

    def _ask_runtime_note(self) -> None:
        self._note_asked = True
        self.run_worker(self._fetch_runtime_note(), group=f"note-{self.id}", exit_on_error=False)

    async def _fetch_runtime_note(self) -> None:
        """The runtime's own word on what runs once it is loaded (its `stats().dtype`, and the mode it
        was asked for when that could not run), so a fallback is visible in the header."""
        actor = self.actor
        if actor is None:
            return
        try:
            stats = await actor.stats()
        except Exception:  # noqa: BLE001 - an actor going away: no note, the header stays as it is
            return
        running, asked = stats.dtype or "", stats.details.get("weights_requested")
        self.runtime_note = f"{running}, {asked} unavailable" if running and asked and asked != running else running
        self.refresh_header()

    def on_unmount(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # ----- header -------------------------------------------------------------------------------------
    def state_text(self) -> str:
        actor = self.actor
        if self.read_only:
            return "recorded"
        if actor is None:
            return "unavailable"
        if actor.state in (ActorState.CREATED, ActorState.STARTING):
            fraction, what = getattr(actor, "load_progress", (0.0, ""))
            if actor.state == ActorState.CREATED:
                return "not loaded"
            return f"loading {fraction:.0%}" + (f" ({what})" if what else "")
        if actor.state == ActorState.FAILED:
            return f"error: {actor.last_error}"
        state = str(actor.state)
        if actor.queued:
            state += f" · {actor.queued} queued"
        return state

    def header_text(self) -> str:
        slot = self.slot
        figures = describe_metrics(self.last_metrics) if self.last_metrics else "no requests yet"
        note = f" · {self.runtime_note}" if self.runtime_note else ""
        return f"{slot.runtime} · {slot.model}{note}  │ {self.state_text()}\n{figures}"

    def refresh_header(self) -> None:
        if self.is_mounted:
            # While the app shuts down the header may already be gone: update what is there.
            for header in self.query(".pane-header").results(Static):
                header.update(self.header_text())
            failed = self.actor is None or self.actor.state == ActorState.FAILED
            self.set_class(failed, "failed")

    def _on_actor_event(self, event: ActorEvent) -> None:
        actor = self.actor
        if event.kind == events.STATE and actor is not None:
            if actor.state == ActorState.STARTING:  # a restart may load differently
                self.runtime_note, self._note_asked = "", False
            elif actor.state == ActorState.IDLE and not self._note_asked:
                self._ask_runtime_note()
        self.refresh_header()

    # ----- conversation -------------------------------------------------------------------------------
    def add_reply_view(self, prompt: str) -> ReplyView:
        self._turns += 1
        view = ReplyView(prompt, id=f"{self.id}-turn-{self._turns}")
        log = self.query_one(".log", VerticalScroll)
        log.mount(view)
        log.scroll_end(animate=False)
        return view

    def send(self, prompt: str) -> TextReply | None:
        """Send `prompt` with the conversation so far; None (and a note in the pane) if it cannot go."""
        view = self.add_reply_view(prompt)
        actor = self.actor
        if actor is None:
            view.finish(f"not sent: {self.slot.error}", outcome="error")
            return None
        user = ChatMessage(role="user", content=prompt)
        try:
            reply = actor.chat([*self.history, user])
        except Exception as error:  # noqa: BLE001 - a stopped actor, bad options: shown, pane stays usable
            view.finish(f"not sent: {error}", outcome="error")
            return None
        self.history.append(user)
        self.replies.append(reply)
        if self.on_sent is not None:
            self.on_sent(self, user, reply)
        self.run_worker(self._stream(reply, user, view), group=f"stream-{self.id}", exit_on_error=False)
        self.refresh_header()
        return reply

    def read(self, text: str) -> Reply[ReadReceipt] | None:
        """Give the actor `text` as context, without asking for a reply (seed 002's *read*): it shows
        in the conversation, and the actor keeps it ahead of every later prompt."""
        shown = text if len(text) <= CONTEXT_SHOWN_CHARS else text[:CONTEXT_SHOWN_CHARS] + "…"
        view = self.add_reply_view(f"[context, {len(text)} characters]\n{shown}")
        view.add_class("context")
        actor = self.actor
        if actor is None:
            view.finish(f"not read: {self.slot.error}", outcome="error")
            return None
        message = ChatMessage(role="user", content=text)
        try:
            reply = actor.read(message)
        except Exception as error:  # noqa: BLE001 - a stopped actor, empty text: shown, pane stays usable
            view.finish(f"not read: {error}", outcome="error")
            return None
        if self.on_read is not None:
            self.on_read(self, message, reply)
        self.run_worker(self._read(reply, view), group=f"read-{self.id}", exit_on_error=False)
        return reply

    def forget(self) -> Reply[ReadReceipt] | None:
        """Drop the context the actor has read (after what is queued); shown in the conversation."""
        view = self.add_reply_view("[context forgotten]")
        view.add_class("context")
        actor = self.actor
        try:
            if actor is None:
                raise RuntimeError(self.slot.error)
            reply = actor.forget()
        except Exception as error:  # noqa: BLE001 - a stopped actor: shown, pane stays usable
            view.finish(f"not forgotten: {error}", outcome="error")
            return None
        if self.on_forget is not None:
            self.on_forget(self, reply)
        self.run_worker(self._read(reply, view), group=f"read-{self.id}", exit_on_error=False)
        return reply

    async def _read(self, reply: Reply[ReadReceipt], view: ReplyView) -> None:
        try:
            receipt = await reply
        except Exception as error:  # noqa: BLE001 - shown under the context it concerns
            view.finish(f"not read: {error}", outcome="cancelled" if isinstance(error, MessageCancelled) else "error")
            return
        held = f"{receipt.context_messages} message{'s' if receipt.context_messages != 1 else ''}"
        if not receipt.read:
            view.finish("the actor holds no context now")
            return
        view.finish(f"read as context · the actor now holds {held} ({receipt.context_chars} characters) "
                    "ahead of every prompt")

    async def _stream(self, reply: TextReply, user: ChatMessage, view: ReplyView) -> None:
        chunks: list[Chunk] = []
        try:
            async for chunk in reply:
                chunks.append(chunk)
                if chunk.text or chunk.thinking:
                    view.feed(chunk.text, chunk.thinking)
        except MessageCancelled:
            self._forget(user)
            view.finish("cancelled", outcome="cancelled")
            self.post_message(self.Finished(self, reply, "cancelled", None))
        except Exception as error:  # noqa: BLE001 - every failure is shown plainly in the pane
            self._forget(user)
            self.last_error = f"{type(error).__name__}: {error}"
            view.finish(f"error: {error}", outcome="error")
            self.post_message(self.Finished(self, reply, "error", None, self.last_error))
        else:
            completion = Completion.from_chunks(chunks)
            self.history.append(ChatMessage(role="assistant", content=completion.text))
            self.last_metrics = completion.metrics
            view.finish(describe_metrics(completion.metrics))
            self.post_message(self.Finished(self, reply, "done", completion.metrics))
        finally:
            if reply in self.replies:
                self.replies.remove(reply)
            self.refresh_header()

    def _forget(self, user: ChatMessage) -> None:
        """A turn that got no answer leaves the conversation, so user/assistant turns stay paired."""
        for index in range(len(self.history) - 1, -1, -1):
            if self.history[index] is user:
                del self.history[index]
                break

    def cancel(self) -> int:
        """Cancel this pane's running and queued replies; returns how many were cancelled."""
        return sum(1 for reply in list(self.replies) if reply.cancel())

    @property
    def busy(self) -> bool:
        return bool(self.replies)

    # ----- selection ---------------------------------------------------------------------------------
    def on_focus(self) -> None:
        self.post_message(self.Selected(self))

    def on_click(self) -> None:
        self.post_message(self.Selected(self))
