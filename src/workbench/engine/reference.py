"""The transformers model we compare against (tests and benchmarks only; the engine never imports it).

``AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`` insists on ``accelerate`` being
installed even on CPU. When it is missing we build the same model the way that call does inside:
config from the GGUF metadata, then transformers' own ``load_gguf_checkpoint`` (which dequantizes
and reverse-permutes Q/K itself), so the reference stays independent of our reader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_transformers_reference"]


def load_transformers_reference(path: str | os.PathLike[str]) -> Any:
    """A float32 transformers causal LM for the GGUF at ``path``, loaded from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import is_accelerate_available

    p = Path(path)
    if is_accelerate_available():
        model = AutoModelForCausalLM.from_pretrained(
            str(p.parent), gguf_file=p.name, dtype=torch.float32, local_files_only=True
        )
        return model.eval()
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(p), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"reference load mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    return model.eval()
