"""Collection with only some extras installed (``tox -e torch``, ``tf``, ``nofw``).

pytest's ``--doctest-modules`` imports every module under ``llmasos/``; one that needs an extra
that is not installed (TensorFlow for ``adapters/tf``, torch for ``adapters/torch``, onnx for
``export``, starlette for ``serve``, ...) would be a collection error, so it is left out. Only a
missing *optional* package leaves a module out: any other import error still fails collection.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).parent

# Import names of the packages that extras bring (pyproject's optional-dependencies).
OPTIONAL = {"torch", "torchvision", "triton", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxscript",
            "starlette", "uvicorn", "prometheus_client", "tokenizers", "safetensors", "PIL", "sentencepiece",
            "transformers", "httpx", "anyio"}


def missing_extra(module: str) -> str | None:
    """The optional package ``module`` needs and this environment lacks, else None."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = (error.name or "").partition(".")[0]
        if top in OPTIONAL and importlib.util.find_spec(top) is None:
            return top
    except Exception:  # noqa: BLE001 - pytest imports it again and reports the error itself
        pass
    return None


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    path = Path(collection_path)
    # __main__.py runs the command line when imported; pytest's doctest collection skips it too
    if path.suffix != ".py" or path.name == "__main__.py" or ROOT / "llmasos" not in path.parents:
        return None
    parts = path.relative_to(ROOT).with_suffix("").parts
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return True if missing_extra(module) else None
