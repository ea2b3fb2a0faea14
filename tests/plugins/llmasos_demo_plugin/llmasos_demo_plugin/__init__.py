"""A tiny llmasos plugin: the model family ``demo`` and the layer ``DemoHighway`` (and ``broken``
and ``BrokenLayer``, which cannot import)."""
