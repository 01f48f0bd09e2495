"""Reasoning parsers: split model output into reasoning and content."""
