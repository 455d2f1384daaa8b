"""`SessionRecorder`: journals a running chat session as it happens, and saves it under a name.

The UI (or a re-run) records each prompt it sends with `record_prompt`, giving the reply's
correlation id; the recorder listens to the pane's actor and journals that request's chunks and its
end (done, error or cancelled). Events of requests it was not told about (another caller of the same
actor, a benchmark) are ignored. Every event goes to the append-only journal at once, so a crash
loses at most the line being written; `save` writes the whole session atomically as
`<folder>/<slug(name)>.json`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workbench.actors import events as actor_events
from workbench.actors.events import ActorEvent, EventEmitter
from workbench.errors import SessionFileError
from workbench.metrics.request import RequestMetrics
from workbench.metrics.sampler import ResourceSample
from workbench.runtimes.types import ChatMessage, Chunk, GenerationOptions, as_messages
from workbench.sessions.schema import (
    CancelledEvent,
    ChatSession,
    ChunkEvent,
    DoneEvent,
    ErrorEvent,
    PaneEvent,
    PaneRecord,
    PlacedEvent,
    PromptEvent,
    SampleEvent,
    SessionEvent,
    SessionHeader,
)
from workbench.sessions.store import SessionJournal, default_sessions_dir, load_session, save_session

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
MAX_SLUG = 64


def slug(name: str) -> str:
    """A file-name-safe form of a session name: lower case, ASCII letters and digits joined by '-'."""
    return _NOT_SLUG.sub("-", name.lower()).strip("-")[:MAX_SLUG].strip("-")


def new_session_id() -> str:
    return uuid.uuid4().hex[:16]


class SessionRecorder:
    """Journals one session: its panes, the prompts sent to them and the answers their actors streamed.

    Use: `recorder = SessionRecorder(folder, "my chat", panes)`, `recorder.attach(pane_id, actor)`,
    then for each request `reply = actor.chat(...)` followed at once (no await in between) by
    `recorder.record_prompt(pane_id, prompt, correlation_id=reply.correlation_id)`.
    `save(name)` writes the session file; `close()` ends the journal (see there what stays on disk).
    """

    def __init__(
        self,
        folder: Path | str | None = None,
        name: str = "",
        panes: Sequence[PaneRecord] = (),
        *,
        session_id: str | None = None,
    ) -> None:
        self.folder = Path(folder) if folder is not None else default_sessions_dir()
        ids = [pane.id for pane in panes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"pane ids must be unique, got {ids}")
        header = SessionHeader(id=session_id or new_session_id(), name=name, panes=list(panes))
        self._header = header
        self._events: list[SessionEvent] = []
        self._panes: dict[str, PaneRecord] = {pane.id: pane for pane in panes}
        self._requests: dict[str, str] = {}  # correlation id -> pane id, while the request runs
        self._finals: dict[str, Chunk] = {}  # correlation id -> its final chunk (metrics)
        self._subscriptions: dict[str, list[Callable[[], None]]] = {}
        self._placed: dict[str, tuple[Any, ...]] = {}  # pane id -> where its model was last recorded
        self._saved_path: Path | None = None
        self._saved_count = -1  # how many events the saved file holds
        self.journal = SessionJournal.create(self.folder, header)

    # ----- what was recorded ----------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._header.id

    @property
    def name(self) -> str:
        return self._header.name

    @property
    def journal_path(self) -> Path:
        return self.journal.path

    @property
    def saved_path(self) -> Path | None:
        """The file the last `save` wrote, if any."""
        return self._saved_path

    @property
    def panes(self) -> list[PaneRecord]:
        return list(self._panes.values())

    @property
    def closed(self) -> bool:
        return self.journal.closed

    def pending(self) -> list[str]:
        """Correlation ids of recorded requests that have not ended yet."""
        return list(self._requests)

    def session(self) -> ChatSession:
        """The session as recorded so far (a copy: recording goes on)."""
        return ChatSession(**self._header.model_dump(exclude={"format"}), events=list(self._events))

    def elapsed(self) -> float:
        """Seconds since the session started: the `t` of an event recorded now."""
        return self.journal.elapsed()

    # ----- recording ---------------------------------------------------------------------------------
    def add_pane(self, record: PaneRecord) -> None:
        """A pane opened (or was re-bound to another actor) after the session began."""
        self._panes[record.id] = record
        self._append(PaneEvent(t=self.elapsed(), pane=record.id, record=record))

    def attach(self, pane_id: str, actor: EventEmitter) -> None:
        """Listen to the actor bound to a pane; attaching again (a re-bound pane) replaces the old one."""
        self._require_pane(pane_id)
        self.detach(pane_id)

        def handler(event: ActorEvent) -> None:
            self._on_actor_event(pane_id, event)

        kinds = (actor_events.CHUNK, actor_events.DONE, actor_events.ERROR, actor_events.CANCELLED)
        self._subscriptions[pane_id] = [actor.on(kind, handler) for kind in kinds]
        self._subscriptions[pane_id].append(actor.on(actor_events.STATE, lambda _: self._record_placement(pane_id, actor)))
        self._record_placement(pane_id, actor)  # it may be ready already

    def detach(self, pane_id: str) -> None:
        for unsubscribe in self._subscriptions.pop(pane_id, []):
            unsubscribe()

    def record_prompt(
        self,
        pane_id: str,
        message: ChatMessage | str | dict[str, Any],
        *,
        correlation_id: str,
        operation: str = "chat",
        options: GenerationOptions | None = None,
    ) -> PromptEvent:
        """Record the new user turn sent to a pane; the request's events are journaled from now on."""
        self._require_pane(pane_id)
        if not correlation_id:
            raise ValueError("record_prompt needs the reply's correlation id")
        if isinstance(message, list):
            raise ValueError("record_prompt takes the one new message, not a conversation")
        user_message = as_messages(message)[0]
        event = PromptEvent(
            t=self.elapsed(), pane=pane_id, correlation_id=correlation_id, operation=operation,
            message=user_message, options=options or GenerationOptions(),
        )
        self._requests[correlation_id] = pane_id
        self._append(event)
        return event

    def record_refusal(
        self,
        pane_id: str,
        message: ChatMessage | str | dict[str, Any],
        error: BaseException,
        *,
        operation: str = "chat",
        options: GenerationOptions | None = None,
    ) -> ErrorEvent:
        """Record a prompt the actor refused before queueing it (NotSupported, bad input): the prompt
        and its error, so the session shows the turn as it went."""
        correlation_id = f"refused-{uuid.uuid4().hex[:12]}"
        self.record_prompt(pane_id, message, correlation_id=correlation_id, operation=operation, options=options)
        del self._requests[correlation_id]
        event = ErrorEvent(t=self.elapsed(), pane=pane_id, correlation_id=correlation_id,
                           error=str(error) or type(error).__name__, error_type=type(error).__name__)
        self._append(event)
        return event

    def record_sample(self, pane_id: str, sample: ResourceSample) -> SampleEvent:
        """Record a resource sample of the process holding the pane's model (playback redraws graphs)."""
        self._require_pane(pane_id)
        event = SampleEvent(
            t=self.elapsed(), pane=pane_id, rss_bytes=max(0, sample.rss_bytes),
            cpu_percent=max(0.0, sample.cpu_percent),
        )
        self._append(event)
        return event

    # ----- saving ----------------------------------------------------------------------------------------
    def save(self, name: str | None = None, *, overwrite: bool = False) -> Path:
        """Write the session atomically as `<folder>/<slug(name)>.json` and return its path.

        Saving the same session again updates its file; a file holding another session (or anything
        unreadable) is replaced only with `overwrite=True`.
        """
        chosen = self._header.name if name is None else name
        stem = slug(chosen) or self.id
        path = self.folder / f"{stem}.json"
        if path.exists() and not overwrite:
            try:
                existing_id = load_session(path).id
            except SessionFileError:
                existing_id = None
            if existing_id != self.id:
                raise SessionFileError(
                    path, "already holds another session; save under another name or overwrite it"
                )
        if chosen != self._header.name:
            self._header = self._header.model_copy(update={"name": chosen})
        save_session(self.session(), path)
        self._saved_path = path
        self._saved_count = len(self._events)
        return path

    def close(self) -> None:
        """Stop listening and close the journal. A session saved under a name is saved once more (so the
        named file holds what came after the save too) and its journal deleted; an unsaved session
        keeps its journal as its record, unless no prompt was ever recorded."""
        for pane_id in list(self._subscriptions):
            self.detach(pane_id)
        if self.journal.closed:
            return
        self.journal.close()
        if self._saved_path is not None and self._saved_count != len(self._events):
            try:
                self.save(self._header.name)
            except (SessionFileError, OSError):
                return  # the named file is gone to another session or unwritable: the journal stays
        nothing_asked = not any(isinstance(event, PromptEvent) for event in self._events)
        if self._saved_count == len(self._events) or nothing_asked:
            self.journal.path.unlink(missing_ok=True)

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- internals --------------------------------------------------------------------------------------
    def _require_pane(self, pane_id: str) -> None:
        if pane_id not in self._panes:
            known = ", ".join(self._panes) or "none"
            raise KeyError(f"no pane {pane_id!r} in this session (panes: {known})")

    def _append(self, event: SessionEvent) -> None:
        if self.journal.closed:
            raise ValueError(f"session {self.id} is closed; nothing more can be recorded")
        self.journal.append(event)
        self._events.append(event)

    def _record_placement(self, pane_id: str, actor: object) -> None:
        """A `placed` event when the pane's model is somewhere new: first ready, or restarted (new pid).
        Only models outside the app's process are recorded (`process`, `ray`): a `thread`-placed one
        runs in the app itself, and actors without a placement (servers, CLIs) have nothing to say."""
        describe = getattr(getattr(actor, "placement", None), "describe", None)
        if describe is None or self.journal.closed:
            return
        where = describe()
        if where.get("pid") is None or where.get("kind") == "thread":  # not started yet, or in the app
            return
        key = (where.get("kind"), where.get("pid"), where.get("node"))
        if self._placed.get(pane_id) == key:
            return
        self._placed[pane_id] = key
        details = {name: value for name, value in where.items()
                   if name not in ("kind", "pid", "node") and isinstance(value, str | int | float | bool | dict)}
        self._append(PlacedEvent(t=self.elapsed(), pane=pane_id, placement=str(where.get("kind")),
                                 pid=where.get("pid"), node=where.get("node"), details=details))

    def _on_actor_event(self, pane_id: str, event: ActorEvent) -> None:
        cid = event.correlation_id
        if cid is None or self._requests.get(cid) != pane_id or self.journal.closed:
            return  # not a request this session sent (or the session is over)
        t = self.elapsed()
        if event.kind == actor_events.CHUNK:
            chunk = event.data
            if not isinstance(chunk, Chunk):
                return
            if chunk.done:
                self._finals[cid] = chunk
            elif chunk.text or chunk.thinking:
                self._append(ChunkEvent(t=t, pane=pane_id, correlation_id=cid, text=chunk.text, thinking=chunk.thinking))
            return
        del self._requests[cid]
        final = self._finals.pop(cid, None)
        if event.kind == actor_events.DONE:
            metrics = final.metrics if final is not None else _metrics_of(event.data)
            reason = final.finish_reason if final is not None else None
            self._append(DoneEvent(t=t, pane=pane_id, correlation_id=cid, metrics=metrics, finish_reason=reason))
        elif event.kind == actor_events.ERROR:
            error = event.data
            self._append(ErrorEvent(t=t, pane=pane_id, correlation_id=cid, error=str(error) or type(error).__name__,
                                    error_type=type(error).__name__ if error is not None else ""))
        else:
            self._append(CancelledEvent(t=t, pane=pane_id, correlation_id=cid))


def _metrics_of(result: Any) -> RequestMetrics | None:
    """Metrics of a non-streamed result (an Embeddings, say), when it carries them."""
    metrics = getattr(result, "metrics", None)
    return metrics if isinstance(metrics, RequestMetrics) else None
