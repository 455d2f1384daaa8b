"""Benchmark workloads: the built-in prompt sets and JSONL prompt files.

A prompt file has one JSON value per line (blank lines and lines starting with `#` are skipped):
- `{"messages": [{"role": "user", "content": "..."}, ...]}` or a bare list of messages: a chat;
- `{"prompt": "..."}` or a JSON string: a single user prompt;
- `{"inputs": ["...", ...]}`: a batch of texts to embed.
A line that is not one of these raises PromptFileError naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from workbench.errors import PromptFileError
from workbench.runtimes.types import ChatMessage
from workbench.sessions.schema import BenchmarkPrompt

MAX_PROMPT_FILE_BYTES = 64 * 1024 * 1024

_SHORT = (
    "What is the capital of France?",
    "Name three primary colours.",
    "How many legs does a spider have?",
    "What does a thermometer measure?",
    "Give one synonym for 'happy'.",
    "Which planet is closest to the Sun?",
    "What is 12 times 12?",
    "Translate 'good morning' into Spanish.",
)

_FIELD_NOTES = (
    "The survey team left the harbour town before dawn and followed the river inland for three days. "
    "On the first day the banks were low and muddy, lined with reeds and the occasional fishing hut; "
    "the water moved slowly and the boats made good progress against it. On the second day the valley "
    "narrowed, the current quickened, and the team had to haul the boats past two sets of rapids, losing "
    "half a day at the second. They camped that night beside a limestone cliff where swallows nested in "
    "hundreds of small holes. On the third day they reached the confluence with a smaller, colder stream "
    "whose water was clear enough to count the stones on its bed. There they measured the flow of both "
    "rivers, took samples of the sediment, and recorded the temperature every hour from noon until "
    "midnight. The colder stream carried almost no silt, while the main river was brown with it, and "
    "where the two met the water ran side by side in two distinct colours for several hundred metres "
    "before mixing. The team leader noted that the fishing huts stopped entirely above the rapids and "
    "that no one they met upstream had heard of the harbour town's new market."
)

_MEETING_MINUTES = (
    "Minutes of the library committee. Present: the chair, the treasurer, two volunteers and the head "
    "librarian. The treasurer reported that the roof repair came in under budget, leaving enough to "
    "replace the heating controls in the reading room before winter. The head librarian reported that "
    "evening opening on Thursdays has doubled visits by students but that the children's corner is now "
    "too crowded on Saturday mornings; she proposed moving the story sessions to the larger meeting "
    "room, which is free on weekends. The volunteers asked for a rota so that new helpers are never "
    "left alone at the desk in their first month, and offered to write a short guide to the lending "
    "system. The committee discussed whether to keep the paper newspaper subscriptions; usage has "
    "fallen, but several older members read them daily and the cost is small. It was agreed to keep "
    "two of the four titles. The chair reminded everyone that the annual book sale needs donations "
    "sorted by the end of next month, and that the sorting tables can only stay in the hall for one "
    "week. The next meeting will review the heating quotes and the volunteer guide."
)

_LONG = (
    f"Read these field notes and list the three most important observations, one line each.\n\n{_FIELD_NOTES}",
    f"Summarise these minutes in two sentences, then list every decision taken.\n\n{_MEETING_MINUTES}",
    f"{_FIELD_NOTES}\n\nQuestion: what made the colder stream different from the main river?",
    f"{_MEETING_MINUTES}\n\nQuestion: what problem did the head librarian raise, and what did she propose?",
)

_EMBED_SENTENCES = (
    "The cat slept on the warm windowsill all afternoon.",
    "A kitten dozed in the sunlight by the window.",
    "Interest rates rose for the third month in a row.",
    "The central bank increased borrowing costs again.",
    "The river burst its banks after a week of heavy rain.",
    "Flood water covered the fields near the village.",
    "She practised the violin for two hours every evening.",
    "The orchestra rehearsed the symphony before the concert.",
    "The new phone has a larger screen and a faster chip.",
    "Engineers redesigned the handset's processor and display.",
    "Bread rises because yeast produces carbon dioxide.",
    "The bakery sells fresh loaves every morning at seven.",
    "Mountain climbers waited for the storm to pass.",
    "Hikers sheltered in a hut while the weather turned.",
    "The museum opened a new exhibition of ancient coins.",
    "Old silver coins went on display in the gallery.",
)
EMBED_BATCH = 8


def _chat(text: str) -> BenchmarkPrompt:
    return BenchmarkPrompt(messages=[ChatMessage(role="user", content=text)])


def builtin_sets() -> dict[str, list[BenchmarkPrompt]]:
    """The built-in sets by name: `short` chats, `long` (prefill-heavy) chats, `embed` batches."""
    batches = [list(_EMBED_SENTENCES[i:i + EMBED_BATCH]) for i in range(0, len(_EMBED_SENTENCES), EMBED_BATCH)]
    return {
        "short": [_chat(text) for text in _SHORT],
        "long": [_chat(text) for text in _LONG],
        "embed": [BenchmarkPrompt(inputs=batch) for batch in batches],
    }


BUILTIN_NAMES = ("short", "long", "embed")


def load_prompts(name_or_path: str) -> list[BenchmarkPrompt]:
    """A built-in set by name, else a JSONL file by path."""
    sets = builtin_sets()
    if name_or_path in sets:
        return sets[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise PromptFileError(path, f"no such prompt file (built-in sets: {', '.join(BUILTIN_NAMES)})")
    if path.stat().st_size > MAX_PROMPT_FILE_BYTES:
        raise PromptFileError(path, f"file is larger than {MAX_PROMPT_FILE_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PromptFileError(path, f"not UTF-8 text (byte {error.start})") from None
    return parse_prompt_lines(text, path)


def parse_prompt_lines(text: str, source: object = "<prompts>") -> list[BenchmarkPrompt]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise PromptFileError(source, f"not valid JSON ({error.msg} at column {error.colno})", number) from None
        prompts.append(_prompt_from(value, source, number))
    if not prompts:
        raise PromptFileError(source, "no prompts in the file")
    return prompts


def _prompt_from(value: Any, source: object, line: int) -> BenchmarkPrompt:
    if isinstance(value, str):
        value = {"prompt": value}
    elif isinstance(value, list):
        value = {"messages": value}
    if not isinstance(value, dict):
        raise PromptFileError(source, _EXPECTED + f", found {type(value).__name__}", line)
    keys = set(value) & {"messages", "prompt", "inputs"}
    if len(keys) != 1 or set(value) - keys:
        raise PromptFileError(source, _EXPECTED + f", found keys {sorted(value)}", line)
    try:
        if "prompt" in value:
            if not isinstance(value["prompt"], str) or not value["prompt"].strip():
                raise PromptFileError(source, "'prompt' must be a non-empty string", line)
            return _chat(value["prompt"])
        prompt = BenchmarkPrompt.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise PromptFileError(source, f"{location}: {first['msg']}", line) from None
    if "messages" in value and not prompt.messages:
        raise PromptFileError(source, "'messages' is empty", line)
    if "inputs" in value and (not prompt.inputs or not all(text.strip() for text in prompt.inputs)):
        raise PromptFileError(source, "'inputs' must be a non-empty list of non-empty strings", line)
    return prompt


_EXPECTED = 'expected {"messages": [...]}, a list of messages, {"prompt": "..."}, a JSON string or {"inputs": [...]}'


def prompt_text(prompt: BenchmarkPrompt) -> str:
    """The text a `generate` request sends: the last user message (or the inputs joined)."""
    for message in reversed(prompt.messages):
        if message.role == "user":
            return message.text
    return "\n".join(prompt.inputs)


def embed_inputs(prompt: BenchmarkPrompt) -> list[str]:
    """The batch an `embed` request sends: the inputs, else each message's text."""
    return list(prompt.inputs) or [message.text for message in prompt.messages if message.text]


def chat_messages(prompt: BenchmarkPrompt) -> list[ChatMessage]:
    """The conversation a `chat` request sends (an embedding batch becomes one user message)."""
    return list(prompt.messages) or [ChatMessage(role="user", content="\n".join(prompt.inputs))]
