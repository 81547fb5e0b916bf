"""Built-in downstream tasks: chat, summarize, translate, classify (see docs/tasks.md)."""
