"""Tool-call parsers: split content into plain content and OpenAI-style tool calls."""
