"""Per-request latency metrics, defined as vLLM's `benchmark_serving` and llmperf define them.

All times are client-side, measured by workbench with `time.perf_counter`, from the moment the
request was sent to the actor (so time spent queued in the mailbox or waiting for a concurrency
slot counts, as it does for a client of a busy server):

- **TTFT** (time to first token): send → first output token (answer or thinking) arrives.
- **ITL** (inter-token latency): the gaps between consecutive token arrivals, one per gap. When a
  runtime delivers several tokens in one chunk, the gap is credited to that chunk (as vLLM does).
- **TPOT** (time per output token, excluding the first): (E2E − TTFT) / (output tokens − 1).
- **E2E** (end-to-end latency): send → the last chunk of the response.
- **Output tokens per second** (per request, llmperf's `request_output_throughput_token_per_s`):
  output tokens / E2E.  **Decode tokens per second** is 1 / TPOT: the generation speed once the
  first token is out, without prefill and queueing.

Runtimes that report their own timings (Ollama's nanosecond durations, say) put them in `server`,
labelled, beside ours; the two are never mixed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from pydantic import BaseModel, Field


#: `server` keys by which runtimes report prompt tokens served from their prompt cache: our torch
#: engine's, and llama.cpp's `timings.cache_n` (kept by the OpenAI-compatible runtime).
TORCH_CACHED_PROMPT_TOKENS = "torch_cached_prompt_tokens"
CACHED_PROMPT_KEYS = (TORCH_CACHED_PROMPT_TOKENS, "llamacpp_cache_n")


class RequestMetrics(BaseModel):
    correlation_id: str = ""
    operation: str = ""
    queued_s: float = 0.0
    ttft_s: float | None = None
    e2e_s: float = 0.0
    itl_s: list[float] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    server: dict[str, float] = Field(default_factory=dict)

    @property
    def cached_prompt_tokens(self) -> float | None:
        """Prompt tokens the runtime took from a prompt cache instead of prefilling them, when it
        says so (`CACHED_PROMPT_KEYS`); a repeated prompt's TTFT is then not a prefill's."""
        for key in CACHED_PROMPT_KEYS:
            if key in self.server:
                return self.server[key]
        return None

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def output_tokens_per_s(self) -> float | None:
        if not self.output_tokens or self.e2e_s <= 0:
            return None
        return self.output_tokens / self.e2e_s

    @property
    def decode_tokens_per_s(self) -> float | None:
        tpot = self.tpot_s
        return 1.0 / tpot if tpot else None

    @property
    def mean_itl_s(self) -> float | None:
        return sum(self.itl_s) / len(self.itl_s) if self.itl_s else None

    def describe(self, *, detailed: bool = False) -> str:
        """One line of the figures that are known: `TTFT 0.21 s · 27.4 tok/s · 64 tokens · E2E 2.54 s`.

        `detailed` adds decode speed and the input/output token counts (for `workbench run`).
        """
        parts = []
        if self.ttft_s is not None:
            parts.append(f"TTFT {self.ttft_s:.2f} s")
        if self.output_tokens_per_s is not None:
            parts.append(f"{self.output_tokens_per_s:.1f} tok/s")
        if detailed and self.decode_tokens_per_s is not None:
            parts.append(f"decode {self.decode_tokens_per_s:.1f} tok/s")
        if not detailed and self.output_tokens is not None:
            parts.append(f"{self.output_tokens} tokens")
        parts.append(f"E2E {self.e2e_s:.2f} s")
        if detailed:
            tokens_in = "?" if self.input_tokens is None else self.input_tokens
            tokens_out = "?" if self.output_tokens is None else self.output_tokens
            parts.append(f"tokens in {tokens_in} / out {tokens_out}")
        return " · ".join(parts)


class MetricsRecorder:
    """Timestamps a request's chunks as they arrive and turns them into RequestMetrics."""

    def __init__(self, correlation_id: str = "", operation: str = "", sent_at: float | None = None) -> None:
        self.correlation_id = correlation_id
        self.operation = operation
        self.sent_at = time.perf_counter() if sent_at is None else sent_at
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.itl_s: list[float] = []
        self.counted_tokens = 0
        self.tokens_known = True

    def started(self, at: float | None = None) -> None:
        self.started_at = time.perf_counter() if at is None else at

    def token(self, count: int | None = 1, at: float | None = None) -> None:
        """One chunk carrying `count` output tokens arrived (None: a chunk of unknown token count)."""
        now = time.perf_counter() if at is None else at
        if self.first_token_at is None:
            self.first_token_at = now
        elif self.last_token_at is not None:
            self.itl_s.append(now - self.last_token_at)
        self.last_token_at = now
        if count is None:
            self.tokens_known = False
            self.counted_tokens += 1
        else:
            self.counted_tokens += count

    def finish(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        server: dict[str, float] | None = None,
        at: float | None = None,
    ) -> RequestMetrics:
        """Close the request; the runtime's own token counts win over our chunk count when given."""
        end = time.perf_counter() if at is None else at
        started = self.started_at if self.started_at is not None else self.sent_at
        if output_tokens is None and self.tokens_known:
            output_tokens = self.counted_tokens
        return RequestMetrics(
            correlation_id=self.correlation_id,
            operation=self.operation,
            queued_s=max(0.0, started - self.sent_at),
            ttft_s=None if self.first_token_at is None else self.first_token_at - self.sent_at,
            e2e_s=end - self.sent_at,
            itl_s=self.itl_s,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            server=server or {},
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(ordered[lower])
    return float(ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower))
