"""A tiny llmasos plugin: the model family ``demo`` (and ``broken``, which cannot import)."""
