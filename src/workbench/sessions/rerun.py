"""Re-running a saved session's prompts against the same or other actors, side by side with the record.

Each pane's prompts are sent again in order, each with the chat context it had, except that the
earlier answers in that context are the NEW ones (so a different model holds its own conversation).
Panes run concurrently (each pane's turns in order; the global concurrency limit caps the total).
The re-run is itself recorded as a session, so it can be played back like any other.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from workbench.errors import NotSupported, RuntimeUnavailable, SessionFileError, SpecError
from workbench.actors.actor import Reply
from workbench.runtimes.base import ChatRequest, ModelRuntimeActor, ReadReceipt, TextReply
from workbench.runtimes.registry import create_actor
from workbench.runtimes.types import ChatMessage, Completion, GenerationOptions
from workbench.sessions.playback import CHAT_OPERATIONS, Turn, history_messages, transcript
from workbench.sessions.recorder import SessionRecorder
from workbench.sessions.schema import ChatSession, PaneRecord


@dataclass(frozen=True, slots=True)
class RerunProgress:
    """What a re-run reports as it goes: a turn starts, streams chunks, finishes (`turn` is the new
    turn, `recorded` the original)."""

    kind: Literal["started", "chunk", "finished"]
    pane: str
    index: int
    recorded: Turn
    text: str = ""
    thinking: str = ""
    turn: Turn | None = None


@dataclass(slots=True)
class TurnComparison:
    """One prompt, answered in the recorded session and in the re-run."""

    pane: str
    index: int
    recorded: Turn
    new: Turn

    @property
    def prompt(self) -> ChatMessage:
        return self.recorded.prompt


@dataclass(slots=True)
class RerunResult:
    """Every re-run turn beside its recorded one; `session` is the re-run as recorded, saved at `path`."""

    original: ChatSession
    session: ChatSession
    path: Path | None
    specs: dict[str, str]  # pane id -> the actor spec the re-run used
    comparisons: list[TurnComparison] = field(default_factory=list)

    def by_pane(self) -> dict[str, list[TurnComparison]]:
        grouped: dict[str, list[TurnComparison]] = {pane: [] for pane in self.specs}
        for comparison in self.comparisons:
            grouped.setdefault(comparison.pane, []).append(comparison)
        return grouped


ProgressHandler = Callable[[RerunProgress], Awaitable[None] | None]
ActorsArgument = Mapping[str, ModelRuntimeActor | str] | Sequence[str] | None


def plan_actors(session: ChatSession, actors: ActorsArgument) -> dict[str, ModelRuntimeActor | str]:
    """Which actor (or spec) answers each pane: a mapping by pane id (panes left out keep their
    recorded spec), a list of specs (one for every pane, or one per pane in order), or None (the
    recorded specs)."""
    panes = session.all_panes()
    if actors is None:
        return {pane.id: pane.spec for pane in panes}
    if isinstance(actors, Mapping):
        unknown = sorted(set(actors) - {pane.id for pane in panes})
        if unknown:
            raise SpecError(f"no pane {', '.join(unknown)} in session {session.name or session.id} "
                            f"(panes: {', '.join(pane.id for pane in panes)})")
        return {pane.id: actors.get(pane.id, pane.spec) for pane in panes}
    specs = list(actors)
    if isinstance(actors, str) or not specs:
        raise SpecError("give actor specs as a list (one for all panes, or one per pane)")
    if len(specs) == 1:
        return {pane.id: specs[0] for pane in panes}
    if len(specs) != len(panes):
        raise SpecError(f"{len(specs)} actors given for {len(panes)} panes: give one for all panes, or one per pane")
    return {pane.id: spec for pane, spec in zip(panes, specs, strict=True)}


def send_turn(
    actor: ModelRuntimeActor, turn: Turn, history: list[ChatMessage], options: GenerationOptions
) -> TextReply | Reply[ReadReceipt]:
    """Send a recorded turn's prompt through the operation it was recorded with (a `read` turn is
    read again: the actor keeps it as context for the turns after it; `forget` drops it again)."""
    prompt = turn.prompt
    if turn.operation == "read":
        return actor.read(prompt)
    if turn.operation == "forget":
        return actor.forget()
    if turn.operation == "chat":
        return actor.chat([*history, prompt], options=options)
    if turn.operation == "think":
        return actor.think([*history, prompt], options=options)
    if turn.operation == "generate":
        return actor.generate(prompt.text, images=prompt.image_urls(), options=options)
    if turn.operation == "complete":
        return actor.complete(prompt.text, options=options)
    if turn.operation in ("summarize_text", "summarize_image"):
        # The recorded prompt already holds the instruction (and the image): send it as it was.
        if not actor.capabilities.supports(turn.operation):
            raise NotSupported(f"{actor.runtime} ({actor.model})", turn.operation)
        request = ChatRequest(messages=[prompt], options=options)
        reply = actor.send(turn.operation, request, stream=True, aggregate=Completion.from_chunks, reply_class=TextReply)
        return reply  # type: ignore[return-value]
    raise NotSupported(f"{actor.runtime} ({actor.model})", turn.operation, "a session cannot re-run it")


async def rerun_session(
    session: ChatSession,
    actors: ActorsArgument = None,
    *,
    folder: Path | str | None = None,
    name: str | None = None,
    options: GenerationOptions | None = None,
    on_progress: ProgressHandler | None = None,
    actor_options: Mapping[str, object] | None = None,
) -> RerunResult:
    """Re-send every pane's prompts and compare the answers with the recorded ones.

    `actors`: see `plan_actors`. Actors given as objects are used as they are (and left running);
    actors named by spec are created, started and stopped here (`actor_options` go to their
    constructor). `options` are laid over each turn's recorded options (a lower max_tokens, say).
    The re-run is recorded in `folder` (default: the sessions folder) and saved under `name`
    (default: "<original name> re-run <time>").
    """
    plan = plan_actors(session, actors)
    recorded = transcript(session)
    owned: list[ModelRuntimeActor] = []
    bound: dict[str, ModelRuntimeActor] = {}
    try:
        for pane_id, target in plan.items():
            if isinstance(target, str):
                actor = _create(target, actor_options)
                owned.append(actor)
                target = actor
            bound[pane_id] = target
        specs = {pane_id: actor.spec for pane_id, actor in bound.items()}
        panes = [
            PaneRecord(id=pane.id, spec=specs[pane.id], title=pane.title, options=pane.options)
            for pane in session.all_panes()
        ]
        label = session.name or session.id
        recorder = SessionRecorder(folder, name or f"{label} re-run {datetime.now():%Y-%m-%d %H:%M:%S}", panes)
        try:
            for pane_id, actor in bound.items():
                recorder.attach(pane_id, actor)
            answers = await asyncio.gather(*(
                _rerun_pane(recorder, pane_id, bound[pane_id], recorded.get(pane_id, []), options, on_progress)
                for pane_id in bound
            ))
            path: Path | None = _save_unclobbered(recorder)
        finally:
            recorder.close()
        new_session = recorder.session()
    finally:
        await asyncio.gather(*(actor.stop(drain=False) for actor in owned), return_exceptions=True)
    comparisons = [
        TurnComparison(pane_id, old.index, old, new)
        for pane_id, new_turns in zip(bound, answers, strict=True)
        for old, new in zip(recorded.get(pane_id, []), new_turns, strict=True)
    ]
    return RerunResult(session, new_session, path, specs, comparisons)


async def _rerun_pane(
    recorder: SessionRecorder,
    pane_id: str,
    actor: ModelRuntimeActor,
    turns: list[Turn],
    options: GenerationOptions | None,
    on_progress: ProgressHandler | None,
) -> list[Turn]:
    answered: list[Turn] = []  # the NEW turns, whose answers make the next turn's context
    for old in turns:
        chosen = _merge(old.options, options)
        history = history_messages(answered) if old.operation in CHAT_OPERATIONS else []
        try:
            reply = send_turn(actor, old, history, chosen)
        except Exception as error:  # refused before it was queued (not supported, bad input)
            recorder.record_refusal(pane_id, old.prompt, error, operation=old.operation, options=chosen)
            answered.append(_new_turn(recorder, pane_id, None))
            await _report(on_progress, RerunProgress("finished", pane_id, old.index, old, turn=answered[-1]))
            continue
        recorder.record_prompt(pane_id, old.prompt, correlation_id=reply.correlation_id,
                               operation=old.operation, options=chosen)
        await _report(on_progress, RerunProgress("started", pane_id, old.index, old))
        try:
            if isinstance(reply, TextReply):
                async for chunk in reply:
                    if chunk.text or chunk.thinking:
                        await _report(on_progress, RerunProgress("chunk", pane_id, old.index, old,
                                                                 text=chunk.text, thinking=chunk.thinking))
            else:  # a read: nothing streams back
                await reply
        except Exception:
            pass  # the recorder journaled the error or cancellation; the transcript shows it
        answered.append(_new_turn(recorder, pane_id, reply.correlation_id))
        await _report(on_progress, RerunProgress("finished", pane_id, old.index, old, turn=answered[-1]))
    return answered


def _new_turn(recorder: SessionRecorder, pane_id: str, correlation_id: str | None) -> Turn:
    """The turn just recorded, read back through the transcript, so the result matches the record."""
    turns = transcript(recorder.session())[pane_id]
    if correlation_id is None:
        return turns[-1]
    return next(turn for turn in reversed(turns) if turn.correlation_id == correlation_id)


def _create(spec: str, options: Mapping[str, object] | None) -> ModelRuntimeActor:
    try:
        return create_actor(spec, **dict(options or {}))
    except ImportError as error:  # a runtime whose dependencies are missing here
        raise RuntimeUnavailable(f"cannot re-run on {spec}: its runtime does not load here ({error})") from None


def _save_unclobbered(recorder: SessionRecorder) -> Path:
    """Save under the recorder's name, or `<name> 2`, `<name> 3`... when another session has it: a
    finished re-run is never lost to a name clash."""
    names = [recorder.name, *(f"{recorder.name} {number}" for number in range(2, 100))]
    for name in names[:-1]:
        try:
            return recorder.save(name)
        except SessionFileError:
            continue
    return recorder.save(names[-1])


def _merge(recorded: GenerationOptions, override: GenerationOptions | None) -> GenerationOptions:
    if override is None:
        return recorded
    merged = recorded.model_dump(exclude_unset=True) | override.model_dump(exclude_unset=True)
    return GenerationOptions.model_validate(merged)


async def _report(handler: ProgressHandler | None, progress: RerunProgress) -> None:
    if handler is None:
        return
    outcome = handler(progress)
    if inspect.isawaitable(outcome):
        await outcome
