"""The ``demo`` family: a Model that keeps a greeting in its saved metadata."""

from __future__ import annotations

from llmasos.model import Model


class Demo(Model):
    """A plain Model whose files come back as a Demo, with the greeting they were saved with."""

    greeting = "hello"

    @classmethod
    def from_saved(cls, spec, *, framework, name, output_dim, metadata):
        model = super().from_saved(spec, framework=framework, name=name, output_dim=output_dim, metadata=metadata)
        model.greeting = metadata["greeting"]
        return model
