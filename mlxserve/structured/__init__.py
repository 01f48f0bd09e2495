"""Structured outputs: grammars (JSON Schema, regex, choice, Lark/GBNF, forced tool calls)
compiled with llguidance, and the per-request constraint whose token masks the engine
applies to the logits. No MLX here: masks are numpy bitmasks the runner uploads.

Import order: serving → engine → structured → errors. The engine only calls the
``GrammarConstraint`` methods documented in constraint.py and ``fill_masks`` in masks.py.
"""
