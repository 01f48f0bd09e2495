"""SpecPrefill's command-line options (vllm-mlx's names) → SpecPrefillConfig."""

from __future__ import annotations

import argparse

from mlxserve.config import SpecPrefillConfig


class SpecPrefillArgsError(ValueError):
    """A bad SpecPrefill option (the CLI prints it as one line)."""


def add_specprefill_args(parser: argparse.ArgumentParser) -> None:
    defaults = SpecPrefillConfig()
    parser.add_argument("--specprefill", action="store_true",
                        help="prefill long prompts sparsely: a draft model scores the "
                             "tokens, the model prefills the chunks that matter")
    parser.add_argument("--specprefill-draft-model", default=None, metavar="SOURCE",
                        help="the scoring draft (same vocabulary as the model); default: "
                             "the speculative-decoding draft model when one is set")
    parser.add_argument("--specprefill-threshold", type=int, default=defaults.threshold,
                        metavar="N", help="uncached prompt tokens from which --specprefill "
                                          f"applies (default {defaults.threshold})")
    parser.add_argument("--specprefill-keep-pct", type=float, default=defaults.keep_pct,
                        metavar="P", help="share of the prompt prefilled, in (0, 1] "
                                          f"(default {defaults.keep_pct})")


def specprefill_config(args: argparse.Namespace, spec_draft: str | None) -> SpecPrefillConfig:
    """``spec_draft``: speculative decoding's draft source (the default scorer)."""
    if not hasattr(args, "specprefill"):  # a parser without these options
        return SpecPrefillConfig()
    if not 0.0 < args.specprefill_keep_pct <= 1.0:
        raise SpecPrefillArgsError("--specprefill-keep-pct must be in (0, 1]")
    if args.specprefill_threshold < 1:
        raise SpecPrefillArgsError("--specprefill-threshold must be a positive integer")
    if args.specprefill and args.specprefill_draft_model is None and spec_draft is None:
        raise SpecPrefillArgsError("--specprefill needs --specprefill-draft-model (or a "
                                   "draft_model --speculative-config)")
    return SpecPrefillConfig(enabled=args.specprefill,
                             draft_model=args.specprefill_draft_model,
                             threshold=args.specprefill_threshold,
                             keep_pct=args.specprefill_keep_pct)
