"""workbench: chat with, monitor and compare LLM runtimes side by side."""

import os as _os

# OpenMP threads (torch's intra-op pool) sleep when idle instead of spinning. Measured here
# (benchmarks/ttft.py, 2 threads on a shared 2-core CPU): spinning made a 14-token prefill of
# torch:smollm2 ~9x slower (3.5-5 s vs 0.4-1 s) and transformers' decode 4-9x slower, because
# spinning threads starve everything else on the machine -- the other panes' models included,
# and our engine's own kernel pool. Set before torch is imported; a value the user set wins.
_OURS = {"OMP_WAIT_POLICY": "PASSIVE"}
_OURS = {k: v for k, v in _OURS.items() if k not in _os.environ}
_os.environ.update(_OURS)


def foreign_env() -> dict[str, str]:
    """The environment for another program (the Ollama CLI, llama.cpp in a benchmark): ours without
    the defaults set above, which are for our own threads. llama.cpp's OpenMP build with
    OMP_WAIT_POLICY=PASSIVE ran 2-thread decode at 31 tok/s against 136-148 without it."""
    return {k: v for k, v in _os.environ.items() if not (k in _OURS and _OURS[k] == v)}


__version__ = "0.1.0"
