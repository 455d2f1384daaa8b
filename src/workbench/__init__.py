"""workbench: chat with, monitor and compare LLM runtimes side by side."""

import os as _os

# OpenMP threads (torch's intra-op pool) sleep when idle instead of spinning. Measured here
# (benchmarks/ttft.py, 2 threads on a shared 2-core CPU): spinning made a 14-token prefill of
# torch:smollm2 ~9x slower (3.5-5 s vs 0.4-1 s) and transformers' decode 4-9x slower, because
# spinning threads starve everything else on the machine -- the other panes' models included,
# and our engine's own kernel pool. Set before torch is imported; a value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
