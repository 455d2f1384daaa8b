"""Text-generation pieces shared by every in-process runtime (our engine and transformers).

One of each, below both `engine` and `runtimes` in the layering so either may import it:

* :mod:`.sampler` -- picks the next token from logits (greedy, or temperature/top-k/top-p with a
  seeded generator) and the repetition penalty;
* :mod:`.detokenize` -- streaming detokenisation over a `tokenizers.Tokenizer` (its `DecodeStream`):
  constant work per token, multi-byte characters kept whole;
* :mod:`.stops` -- the stop-string matcher that never lets the start of a stop string leak out;
* :mod:`.chat_template` -- a model's Jinja chat template rendered in a sandbox, as transformers does.

Submodules are imported explicitly (``from workbench.textgen.stops import StopMatcher``) so that
text-only users do not import torch.
"""
