"""The PyTorch adapter: the only package that imports torch."""

from __future__ import annotations

from ..coexist import before_torch

before_torch()

import torch  # noqa: E402

from ...spec import ModelSpec  # noqa: E402
from ..base import Backend  # noqa: E402
from .build import TorchModel, build


class TorchBackend(Backend):
    name = "torch"
    package = "torch"

    def version(self) -> str:
        return torch.__version__

    def build(self, spec: ModelSpec, seed: int | None = None, device: str = "cpu") -> TorchModel:
        return build(spec, seed, device)

    def devices(self) -> list[str]:
        from .devices import available

        return available()

    def export_onnx(self, model: TorchModel, path: str, opset: int | None = None, *,
                    external_data: bool = False) -> dict:
        from .export import export_onnx

        return export_onnx(model, path, opset, external_data=external_data)


BACKEND = TorchBackend()
