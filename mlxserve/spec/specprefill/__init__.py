"""SpecPrefill (Liu et al., arXiv 2502.02789): a small draft model reads the prompt and
scores each token by the attention it receives from the prompt's last positions; the
target then prefills only the best-scored chunks, at their original positions.

- ``select`` (pure numpy): which chunks to keep, and their contiguous runs.
- ``scoring`` (MLX): the draft's chunked prefill and the tail-attention scores, through
  the ``models/attention_scores`` adapter.
- ``sparse`` (MLX): the target's sparse prefill on a one-row ``BatchCache`` whose
  position delta puts every kept run at its original position.
"""
