"""Benchmark workloads: the built-in prompt sets and JSONL prompt files.

A prompt file has one JSON value per line (blank lines and lines starting with `#` are skipped):
- `{"messages": [{"role": "user", "content": "..."}, ...]}` or a bare list of messages: a chat;
- `{"prompt": "..."}` or a JSON string: a single user prompt;
- `{"inputs": ["...", ...]}`: a batch of texts to embed.
A chat or prompt line may add `"expected": {"match": "exact|contains|regex|choice|number|json", ...}`
(see `Expectation`), and its answers are then scored. A line that is not one of these, or whose
expectation is malformed, raises PromptFileError naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from workbench.errors import PromptFileError
from workbench.files import NO_SUCH_FILE, read_bounded
from workbench.runtimes.types import ChatMessage
from workbench.sessions.schema import BenchmarkPrompt, Expectation

MAX_PROMPT_FILE_BYTES = 64 * 1024 * 1024

def _contains(text: str) -> Expectation:
    return Expectation(match="contains", value=text)


def _regex(pattern: str, case_sensitive: bool = False) -> Expectation:
    return Expectation(match="regex", value=pattern, case_sensitive=case_sensitive)


def _number(value: float, pick: Literal["last", "first", "any"] = "last") -> Expectation:
    return Expectation(match="number", value=value, pick=pick)


def _yes_no(answer: str) -> Expectation:
    return Expectation(match="choice", options=["yes", "no"], value=answer)


def _json(keys: list[str], value: Any = None) -> Expectation:
    return Expectation(match="json", keys=keys, value=value)


# The speed set: short chats, most with an expectation, so a plain run shows an accuracy column too.
_SHORT: tuple[tuple[str, Expectation | None], ...] = (
    ("What is the capital of France?", _contains("Paris")),
    ("Name three primary colours.", None),
    ("How many legs does a spider have?", _number(8, "any")),
    ("What does a thermometer measure?", _contains("temperature")),
    ("Give one synonym for 'happy'.", None),
    ("Which planet is closest to the Sun?", _contains("Mercury")),
    ("What is 12 times 12?", _number(144)),
    ("Translate 'good morning' into Spanish.", _regex(r"buen[oa]s\s+d[ií]as")),
)

# The scored set: simple facts, arithmetic, yes/no and JSON-format tasks, written for workbench. An
# arithmetic answer is its last number (a small model restates the question: "12 times 12 is 144"); a
# question with no number in it accepts the right number anywhere in the answer; yes/no takes the first
# of the two words the answer says.
_SCORED: tuple[tuple[str, Expectation], ...] = (
    ("What is the capital of France?", _contains("Paris")),
    ("What is the capital of Japan?", _contains("Tokyo")),
    ("What is the capital of Italy?", _contains("Rome")),
    ("What is the capital of Germany?", _contains("Berlin")),
    ("Which planet is closest to the Sun?", _contains("Mercury")),
    ("What is the largest planet in our solar system?", _contains("Jupiter")),
    ("What colour is the sky on a clear day?", _contains("blue")),
    ("Which gas do plants take in from the air to make food?", _regex(r"carbon dioxide|CO2")),
    ("What language is mainly spoken in Brazil?", _contains("Portuguese")),
    ("Who wrote the play Romeo and Juliet?", _contains("Shakespeare")),
    ("What is the chemical symbol for gold?", _regex(r"\bAu\b", case_sensitive=True)),
    ("What is the opposite of hot?", _contains("cold")),
    ("How many days are there in a week?", _number(7, "any")),
    ("How many legs does a spider have?", _number(8, "any")),
    ("At what temperature in degrees Celsius does water freeze?", _number(0, "any")),
    ("How many continents are there on Earth?", _number(7, "any")),
    ("What is 2 + 2?", _number(4)),
    ("What is 7 + 5?", _number(12)),
    ("What is 10 - 3?", _number(7)),
    ("What is 9 times 6?", _number(54)),
    ("What is 12 times 12?", _number(144)),
    ("What is 100 divided by 4?", _number(25)),
    ("What is 15 + 27?", _number(42)),
    ("What is half of 50?", _number(25)),
    ("Is the Sun a star? Answer yes or no.", _yes_no("yes")),
    ("Is 7 an even number? Answer yes or no.", _yes_no("no")),
    ("Is Paris in Germany? Answer yes or no.", _yes_no("no")),
    ("Do cats have wings? Answer yes or no.", _yes_no("no")),
    ("Is the Pacific an ocean? Answer yes or no.", _yes_no("yes")),
    ("Is 10 greater than 3? Answer yes or no.", _yes_no("yes")),
    ("Can a fish live without water? Answer yes or no.", _yes_no("no")),
    ("Reply with exactly the word hello and nothing else.", Expectation(match="exact", value="hello")),
    ('Reply with only a JSON object with the keys "name" and "age" for Alice, who is 30 years old.',
     _json(["name", "age"], {"name": "Alice", "age": 30})),
    ('Reply with only a JSON object {"answer": ...} where the answer is the capital of France.',
     _json(["answer"], {"answer": "Paris"})),
    ('Reply with only a JSON object with a key "colors" whose value is a list of three colours.',
     _json(["colors"])),
    ("Reply with only a JSON list of the numbers one, two and three.", _json([], [1, 2, 3])),
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


def _chat(text: str, expected: Expectation | None = None) -> BenchmarkPrompt:
    return BenchmarkPrompt(messages=[ChatMessage(role="user", content=text)], expected=expected)


def builtin_sets() -> dict[str, list[BenchmarkPrompt]]:
    """The built-in sets by name: `short` chats (mostly scored), `scored` (a few dozen scored chats:
    facts, arithmetic, yes/no, JSON), `long` (prefill-heavy) chats, `embed` batches."""
    batches = [list(_EMBED_SENTENCES[i:i + EMBED_BATCH]) for i in range(0, len(_EMBED_SENTENCES), EMBED_BATCH)]
    return {
        "short": [_chat(text, expected) for text, expected in _SHORT],
        "scored": [_chat(text, expected) for text, expected in _SCORED],
        "long": [_chat(text) for text in _LONG],
        "embed": [BenchmarkPrompt(inputs=batch) for batch in batches],
    }


BUILTIN_NAMES = ("short", "scored", "long", "embed")


def find_expectation(text: str) -> Expectation | None:
    """The expectation a built-in prompt with this exact text carries (the app scores pane answers
    to prompts typed or pasted from a built-in set), else None."""
    wanted = text.strip()
    for prompts in builtin_sets().values():
        for prompt in prompts:
            if prompt.expected is not None and prompt_text(prompt).strip() == wanted:
                return prompt.expected
    return None


def load_prompts(name_or_path: str) -> list[BenchmarkPrompt]:
    """A built-in set by name, else a JSONL file by path."""
    sets = builtin_sets()
    if name_or_path in sets:
        return sets[name_or_path]
    path = Path(name_or_path)

    def refused(path: Path, problem: str) -> PromptFileError:
        if problem == NO_SUCH_FILE:
            problem = f"no such prompt file (built-in sets: {', '.join(BUILTIN_NAMES)})"
        return PromptFileError(path, problem)

    data = read_bounded(path, MAX_PROMPT_FILE_BYTES, refused)
    try:
        text = data.decode("utf-8")
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
    if len(keys) != 1 or set(value) - keys - {"expected"}:
        raise PromptFileError(source, _EXPECTED + f", found keys {sorted(value)}", line)
    expected = _expectation_from(value.get("expected"), "inputs" in value, source, line)
    try:
        if "prompt" in value:
            if not isinstance(value["prompt"], str) or not value["prompt"].strip():
                raise PromptFileError(source, "'prompt' must be a non-empty string", line)
            return _chat(value["prompt"], expected)
        prompt = BenchmarkPrompt.model_validate({**value, "expected": None}).model_copy(update={"expected": expected})
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise PromptFileError(source, f"{location}: {first['msg']}", line) from None
    if "messages" in value and not prompt.messages:
        raise PromptFileError(source, "'messages' is empty", line)
    if "inputs" in value and (not prompt.inputs or not all(text.strip() for text in prompt.inputs)):
        raise PromptFileError(source, "'inputs' must be a non-empty list of non-empty strings", line)
    return prompt


def _expectation_from(value: Any, embed: bool, source: object, line: int) -> Expectation | None:
    """The line's `expected`, validated; a malformed one is a PromptFileError naming the line."""
    if value is None:
        return None
    if embed:
        raise PromptFileError(source, "'expected' applies to chats and prompts, not to 'inputs' (embeddings)", line)
    if not isinstance(value, dict):
        raise PromptFileError(source, f"'expected' must be an object with 'match', found {type(value).__name__}", line)
    try:
        return Expectation.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise PromptFileError(source, f"bad expectation: {('expected.' + where + ': ') if where else ''}{message}",
                              line) from None


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
