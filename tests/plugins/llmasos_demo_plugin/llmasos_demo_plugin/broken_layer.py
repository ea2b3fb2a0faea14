"""A layer whose module fails to import, as a plugin with a missing dependency does."""

import llmasos_demo_plugin_missing_layer_dependency  # noqa: F401  (not installed anywhere, on purpose)
