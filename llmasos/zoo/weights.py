"""Pretrained weights, offline: find a checkpoint, read it as NumPy, map it onto a zoo spec.

``pretrained=`` (see :func:`locate`) is

* ``True``: the model's standard checkpoint: torchvision's file name in
  ``$TORCH_HOME/hub/checkpoints``, then its Hugging Face repo in the hub cache (``$HF_HOME/hub``);
* a path to a file (``.pth``/``.pt``/``.bin``, ``.safetensors``, ``.npz``) or to a folder
  (Hugging Face/timm style: ``config.json`` plus ``model.safetensors`` or ``pytorch_model.bin``);
* a bare file name, looked up in the torchvision cache, or a Hugging Face repo id
  (``"timm/resnet18.tv_in1k"``), looked up in the hub cache.

Nothing is ever downloaded. When nothing is found, :class:`WeightsNotFoundError` lists every
place looked in and how to put a file there.

Checkpoints are torch state dicts: ``{"layer1.0.conv1.weight": array, ...}``. Zoo layers carry
torchvision's module names, so :func:`to_neutral` maps keys by name and converts layouts (conv
OIHW -> HWIO, Linear (out, in) -> (in, out), BatchNorm weight/bias/running stats).

>>> import numpy as np
>>> from llmasos.spec import ModelSpec
>>> spec = ModelSpec.sequential((3, 8, 8)).add("Conv2D", 4, kernel_size=3, name="conv")
>>> state = {"conv.weight": np.zeros((4, 3, 3, 3), np.float32), "conv.bias": np.zeros(4, np.float32)}
>>> to_neutral(state, spec)["conv"]["kernel"].shape
(3, 3, 3, 4)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..adapters.base import Weights
from ..errors import WeightsError, WeightsNotFoundError
from ..spec import ModelSpec
from . import registry
from .registry import ModelInfo

log = logging.getLogger("llmasos.zoo")

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", ".npz")
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")  # what a Hugging Face/timm folder holds, in preference order
IGNORED = ("num_batches_tracked",)  # torch BatchNorm bookkeeping with no neutral counterpart
SHOWN = 8  # problems of one sort listed in an error before "... and N more"


# -- where checkpoints live ---------------------------------------------------------------------


def torch_checkpoints() -> Path:
    """torchvision's download cache, resolved as ``torch.hub.get_dir()`` does, plus ``checkpoints``."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved as ``huggingface_hub`` does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hf_repo_folder(repo: str) -> Path:
    """The cache folder of a hub model repo (``models--org--name``)."""
    return hf_hub_cache() / ("models--" + repo.replace("/", "--"))


def _snapshot(folder: Path) -> Path | None:
    """The snapshot ``refs/main`` points at, else the newest one; None when there is none."""
    ref = folder / "refs" / "main"
    if ref.is_file() and (folder / "snapshots" / ref.read_text().strip()).is_dir():
        return folder / "snapshots" / ref.read_text().strip()
    snapshots = sorted((folder / "snapshots").glob("*/"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return snapshots[-1] if snapshots else None


def _looks_like_repo(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith(("/", ".", "~")) and Path(text).suffix not in SUFFIXES


def locate(pretrained: Any, info: ModelInfo) -> Path:
    """The checkpoint file or folder ``pretrained`` names for ``info``; raises
    :class:`WeightsNotFoundError` listing every place looked in."""
    looked: list[Path] = []
    if pretrained is True:
        if info.weights is None:
            raise WeightsNotFoundError(f"{info.name} has no standard pretrained weights; pass pretrained= a "
                                       f"file or folder of your own")
        looked.append(torch_checkpoints() / info.weights.file)
        if info.weights.hf_repo:
            looked.append(hf_repo_folder(info.weights.hf_repo))
    elif isinstance(pretrained, (str, os.PathLike)):
        text = os.fspath(pretrained)
        looked.append(Path(text).expanduser().absolute())
        if len(Path(text).parts) == 1:
            looked.append(torch_checkpoints() / text)
        if _looks_like_repo(text):
            looked.append(hf_repo_folder(text))
    else:
        raise WeightsError(f"pretrained must be False, True, a path or a file/repo name, got {pretrained!r}")
    for place in looked:
        found = _snapshot(place) if place.name.startswith("models--") else place
        if found is not None and found.exists():
            return found
    raise WeightsNotFoundError(_not_found(info, pretrained, looked))


def _not_found(info: ModelInfo, pretrained: Any, looked: list[Path]) -> str:
    wanted = "its standard weights" if pretrained is True else repr(os.fspath(pretrained))
    lines = [f"no pretrained weights for {info.name} ({wanted}) were found; nothing is downloaded. Looked in:"]
    lines += [f"  {place}" + (" (no snapshot)" if place.name.startswith("models--") and place.exists() else "")
              for place in looked]
    file = info.weights.file if info.weights else Path(os.fspath(pretrained)).name
    lines.append("To use them, either:")
    if info.weights:
        fetch = info.weights.fetched_by or f"torchvision.models.{info.name}(weights='DEFAULT')"
        lines.append(f"  - download {info.weights.url} (on a machine with internet, {fetch} caches it) "
                     f"and copy it to {torch_checkpoints() / file}")
        if info.weights.hf_repo:
            lines.append(f"  - or fetch the Hugging Face repo into the hub cache: huggingface-cli download "
                         f"{info.weights.hf_repo} (with HF_HOME={hf_hub_cache().parent} when copying a cache over)")
    else:
        lines.append(f"  - copy the file to {torch_checkpoints() / file}")
    lines.append("  - or pass pretrained='/path/to/checkpoint.pth' (.pth, .safetensors, .npz, or a folder)")
    return "\n".join(lines)


# -- reading ------------------------------------------------------------------------------------


def read(path: Path, info: ModelInfo) -> dict[str, np.ndarray]:
    """A checkpoint file or folder as ``{key: float32 array}``; a folder's ``config.json`` must
    name ``info``'s architecture, and a file must not be another zoo model's standard one."""
    if path.is_dir():
        return read(_folder_file(path, info), info)
    for other in registry.entries():
        if other.weights and other.weights.file == path.name and other.name != info.name:
            raise WeightsError(f"{path} is {other.name}'s standard checkpoint, not {info.name}'s; "
                               f"load it with zoo.load({other.name!r}, pretrained=...)")
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        state = _read_torch(path)
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        state = load_file(str(path))
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            state = {key: archive[key] for key in archive.files}
    else:
        raise WeightsError(f"{path}: unsupported checkpoint type {suffix or '(none)'!r}; use one of "
                           f"{', '.join(SUFFIXES)} or a folder holding {' or '.join(FOLDER_FILES)}")
    return {key: np.asarray(value, dtype=np.float32) for key, value in state.items()}


def _folder_file(folder: Path, info: ModelInfo) -> Path:
    config_path = folder / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        # timm writes "architecture"; transformers "model_type" and "architectures"
        named = config.get("architecture") or config.get("model_type") or (config.get("architectures") or [None])[0]
        if named and str(named).split(".")[0] != info.name:
            raise WeightsError(f"{folder}: its config.json names the architecture {named!r}, not {info.name!r}; "
                               f"load it with the zoo model of that architecture")
    for name in FOLDER_FILES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    raise WeightsError(f"{folder}: expected {' or '.join(FOLDER_FILES)}, or exactly one checkpoint file "
                       f"({', '.join(SUFFIXES)}); found {', '.join(p.name for p in candidates) or 'none'}")


def _read_torch(path: Path) -> dict:
    """A torch checkpoint through ``torch.load(weights_only=True)``: tensors and plain containers
    only, never arbitrary pickled objects."""
    try:
        import torch
    except ImportError:
        raise WeightsError(f"{path}: reading {path.suffix} files needs PyTorch (pip install \"llmasos[torch]\"); "
                           f"or convert the checkpoint to .safetensors") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for a bad file
        raise WeightsError(f"{path}: not a readable state dict of tensors ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''})") from None
    # training scripts often wrap the state dict, or save it from a DataParallel "module."
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict (names -> tensors), got {type(state).__name__}")
    prefix = "module."
    if state and all(key.startswith(prefix) for key in state):
        state = {key[len(prefix):]: value for key, value in state.items()}
    return {key: value.detach().float().numpy() for key, value in state.items()}


# -- torch names and layouts -> neutral ----------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """One torch parameter: its neutral name and the axis order from torch's layout to neutral."""

    neutral: str
    axes: tuple[int, ...] | None = None

    def convert(self, array: np.ndarray) -> np.ndarray:
        return array if self.axes is None else np.ascontiguousarray(np.transpose(array, self.axes))

    def torch_shape(self, neutral_shape: tuple) -> tuple:
        return neutral_shape if self.axes is None else tuple(neutral_shape[i] for i in np.argsort(self.axes))


# layer kind -> torch parameter name -> neutral weight
TORCH_LAYOUTS: dict[str, dict[str, _Layout]] = {
    "Conv1D": {"weight": _Layout("kernel", (2, 1, 0)), "bias": _Layout("bias")},     # OIL -> LIO
    "Conv2D": {"weight": _Layout("kernel", (2, 3, 1, 0)), "bias": _Layout("bias")},  # OIHW -> HWIO
    "Dense": {"weight": _Layout("kernel", (1, 0)), "bias": _Layout("bias")},         # (out, in) -> (in, out)
    "BatchNorm": {"weight": _Layout("gamma"), "bias": _Layout("beta"), "running_mean": _Layout("moving_mean"),
                  "running_var": _Layout("moving_variance")},
    "LayerNorm": {"weight": _Layout("gamma"), "bias": _Layout("beta")},
    "GroupNorm": {"weight": _Layout("gamma"), "bias": _Layout("beta")},
    "Unembedding": {"bias": _Layout("bias")},
    "Embedding": {"weight": _Layout("embeddings")},
    "PositionEmbedding": {"weight": _Layout("embeddings")},
    "ClassToken": {"cls_token": _Layout("cls_token")},   # zoo.vit registers this layer: the class token
    "DetectionTokens": {"tokens": _Layout("tokens")},    # zoo.yolos registers this one: YOLOS' detection tokens
}


def to_neutral(state: dict[str, np.ndarray], spec: ModelSpec, skip: tuple[str, ...] = (),
               source: str = "the checkpoint") -> Weights:
    """Map a torch state dict onto ``spec`` by layer name; layers in ``skip`` are left out.

    Raises :class:`WeightsError` listing every key with a wrong shape (both shapes, torch
    layout), every weight the checkpoint lacks and every key the model has no place for.
    """
    kinds = {layer.name: layer.kind for layer in spec.layers}
    expected = spec.weight_shapes()
    weights: Weights = {}
    wrong, unexpected, matched = [], [], set()
    for key, array in state.items():
        layer, _, param = key.rpartition(".")
        if param in IGNORED or layer in skip:
            continue
        layout = TORCH_LAYOUTS.get(kinds.get(layer, ""), {}).get(param)
        if layout is None or layout.neutral not in expected.get(layer, {}):
            unexpected.append(key)
            continue
        matched.add(key)
        need = layout.torch_shape(expected[layer][layout.neutral])
        if array.shape != need:
            wrong.append(f"{key}: {array.shape} in {source}, the model needs {need}")
        else:
            weights.setdefault(layer, {})[layout.neutral] = layout.convert(array)
    missing = [f"{layer}.{param}" for layer, names in expected.items() if layer not in skip
               for param, layout in TORCH_LAYOUTS.get(kinds[layer], {}).items()
               if layout.neutral in names and f"{layer}.{param}" not in matched]
    problems = [(f"{len(wrong)} wrong shape(s)", wrong), (f"{len(missing)} missing key(s)", missing),
                (f"{len(unexpected)} unexpected key(s)", unexpected)]
    if any(items for _, items in problems):
        other = "" if matched else " (none of its keys names a layer of this model: another architecture's?)"
        raise WeightsError(f"{source} does not fit the model{other}:\n" + "\n".join(
            f"  {title}: {_listed(items)}" for title, items in problems if items))
    return weights


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f", ... and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def load_pretrained(info: ModelInfo, spec: ModelSpec, pretrained: Any, replace_head: bool) -> tuple[Weights, Path]:
    """Neutral weights for ``spec`` from the checkpoint ``pretrained`` names, and its path.

    With ``replace_head`` (``num_classes`` was given) a checkpoint head of another size is
    skipped, with a warning on the ``llmasos.zoo`` logger; the caller keeps the new head.
    """
    path = locate(pretrained, info)
    state = read(path, info)
    if info.adapt_state_dict is not None:
        state = info.adapt_state_dict(state, spec)
    skip: tuple[str, ...] = ()
    head = state.get(f"{info.classifier}.weight")
    units = spec.layer(info.classifier).config["units"]
    if replace_head and head is not None and head.shape[0] != units:
        skip = (info.classifier,)
        log.warning("%s: the checkpoint's head %r (%d classes) is not loaded: num_classes=%d replaces it with a "
                    "new, randomly initialised one", info.name, info.classifier, head.shape[0], units)
    return to_neutral(state, spec, skip, source=str(path)), path
