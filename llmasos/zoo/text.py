"""What the Hugging Face families (:mod:`.bert`, :mod:`.gpt2`, :mod:`.marian`, :mod:`.wav2vec2`)
share: configs and folders, tokenizers, and the :class:`TextModel` they load into (and come back
as from ``.to()`` and ``Model.load``).

A family is a :class:`TextModel` subclass that names its config class, the ``model_type`` of
its Hugging Face folders, its tasks and how to build its spec; :func:`load_text` does the rest::

    bert = zoo.load("bert", framework="tf", pretrained="path/to/bert-folder",
                    task="text-classification", num_labels=2)
    bert.classify(["a good film"])              # ['LABEL_1'] (or the folder's id2label)
    tiny = zoo.load("bert", config={"hidden_size": 32, "num_hidden_layers": 2,
                                    "num_attention_heads": 4, "intermediate_size": 64})

A Hugging Face folder is ``config.json`` plus ``model.safetensors`` (or ``pytorch_model.bin``,
read with ``torch.load(weights_only=True)``) and, when present, ``tokenizer.json``, which the
``tokenizers`` package loads and the model keeps. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..data import TextDataset
from ..errors import DataError, WeightsError, WeightsNotFoundError, ZooError
from ..losses import get as get_loss
from ..model import Model
from ..spec import ModelSpec
from ..texts import COLUMNS, Tokens, tokenize
from .registry import ModelInfo
from .weights import hf_repo_folder, locate, read, to_neutral

log = logging.getLogger("llmasos.zoo")

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"

# Hugging Face activation names -> the spec's
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "tanh": "tanh", "silu": "silu", "swish": "silu"}


def activation(name: str, where: str) -> str:
    if name not in ACTIVATIONS:
        raise ZooError(f"{where}: activation {name!r} is not supported; supported: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@dataclasses.dataclass(frozen=True)
class HFConfig:
    """A family's architecture settings, named as in Hugging Face's ``config.json``.

    Subclasses declare fields with the defaults of the family's standard model, and in
    ``FIXED`` the settings llmasos cannot build otherwise, with the only value it supports.
    """

    FIXED: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "HFConfig":
        """Known keys are taken, the rest (tokenizer ids, training settings, ...) ignored."""
        for key, supported in cls.FIXED.items():
            if data.get(key, supported) != supported:
                raise ZooError(f"{where}: {key}={data[key]!r} is not supported (only {supported!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TextModel(Model):
    """A zoo text model: an ordinary :class:`~llmasos.model.Model` (train, predict, save, export)
    that keeps its Hugging Face-style ``config`` and, when one was found or given, its tokenizer.

    Subclasses (one per family) set the class attributes below.
    """

    config_class: ClassVar[type[HFConfig]]
    model_types: ClassVar[tuple[str, ...]]    # config.json "model_type" values this family reads
    tasks: ClassVar[tuple[str, ...]]          # the first is the default
    hf_repo: ClassVar[str]                    # the standard weights' Hugging Face repo (pretrained=True)
    positions: ClassVar[str]                  # the config field holding the maximum sequence length
    parts: ClassVar[tuple[str, ...]] = ()     # the extra models generation runs (see part_spec)
    # what train() and evaluate() use when not told (None: the loss the last activation implies)
    default_loss: ClassVar[str | None] = None
    default_metrics: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, spec: ModelSpec, config: HFConfig, task: str, framework: str | None = None,
                 name: str = "model", tokenizer: Any = None) -> None:
        super().__init__(spec=spec, framework=framework, name=name)
        self.config, self.task, self.tokenizer = config, task, tokenizer
        self._parts: dict[str, Model] = {}

    def _like(self, framework: str) -> "TextModel":
        return type(self)(ModelSpec.from_dict(self.spec.to_dict()), self.config, self.task, framework, self.name,
                          self.tokenizer)

    def _head_layers(self) -> set[str]:
        return set(self.heads(self.task))

    @classmethod
    def layer_groups(cls, spec: ModelSpec) -> dict[str, set[str]]:
        """Named sets of ``spec``'s layers that ``freeze``/``unfreeze`` (and ``zoo.load(freeze=)``)
        take besides layer names and ``"backbone"`` (Marian's ``"encoder"``, Wav2Vec2's
        ``"feature_extractor"``)."""
        return {}

    def _resolve_layers(self, layers, verb: str) -> set[str]:
        groups = self.layer_groups(self.spec)
        if isinstance(layers, str) and layers in groups:
            return set(groups[layers])
        return super()._resolve_layers(layers, verb)

    def _fixed_layers(self) -> set[str]:
        return set(self.constant_weights(self.config, self.spec))

    @classmethod
    def build_spec(cls, config: HFConfig, task: str, num_labels: int, logits: bool) -> ModelSpec:
        raise NotImplementedError

    @classmethod
    def heads(cls, task: str) -> tuple[str, ...]:
        """Layers a checkpoint of another task may lack or size differently (a new head)."""
        return ()

    @classmethod
    def read_tokenizer(cls, source: Any, folder: Path | None) -> Any:
        """The tokenizer ``source`` gives (an object or a path), else the folder's; None if neither."""
        return load_tokenizer(source, folder)

    @classmethod
    def from_saved(cls, spec: ModelSpec, *, framework: str | None, name: str, output_dim: int | None,
                   metadata: dict) -> "TextModel":
        """The family model for an ``.h5`` a zoo model was saved to (``Model.load`` sets its weights):
        its config from the file, its tokenizer from the folder it was first loaded from, when that
        folder is still there."""
        config = cls.config_class.from_dict(metadata.get("config") or {}, metadata.get("zoo") or name)
        folder = Path(metadata["pretrained"]) if metadata.get("pretrained") else None
        tokenizer = cls.read_tokenizer(None, folder) if folder is not None and folder.is_dir() else None
        return cls(spec, config, metadata.get("task") or cls.tasks[0], framework, name, tokenizer)

    def part_spec(self, part: str) -> ModelSpec:
        """The spec of one of :attr:`parts`, whose layers are named as this model's."""
        raise NotImplementedError

    def part(self, part: str) -> Model:
        """One of :attr:`parts` (GPT-2's cached decoder; Marian's encoder and decoder) with this
        model's weights, in its framework; made once and remade after ``set_weights`` or ``train``."""
        if part not in self.parts:
            raise ZooError(f"{self.name} has no part {part!r}; its parts: {', '.join(self.parts) or 'none'}")
        if part not in self._parts:
            spec = self.part_spec(part)
            model = Model(spec=spec, framework=self.framework, name=f"{self.name}-{part}")
            weights = self.get_weights()
            model.set_weights({layer.name: weights[layer.name] for layer in spec.layers if layer.name in weights})
            model.metadata = dict(self.metadata)
            self._parts[part] = model
        return self._parts[part]

    def generation_parts(self) -> dict[str, Model]:
        """Every one of :attr:`parts`, each exported beside the model by ``llmasos zoo export``."""
        return {part: self.part(part) for part in self.parts}

    def set_weights(self, weights) -> None:
        super().set_weights(weights)
        self._parts = {}

    def train(self, *args: Any, **kwargs: Any):
        self._parts = {}
        return super().train(*args, **self._task_defaults(kwargs))

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """As :meth:`Model.evaluate`, with the family's loss and metrics by default (GPT-2: the
        causal LM's loss and ``perplexity``)."""
        return super().evaluate(*args, **self._task_defaults(kwargs, self._loss))

    def _task_defaults(self, kwargs: dict, trained: str | None = None) -> dict:
        """``kwargs`` with ``loss`` (given, else the one trained with, else the family's) and,
        with the family's loss, its metrics unless some are given."""
        loss = kwargs.get("loss") or trained or self.default_loss
        if loss is None:
            return kwargs
        kwargs["loss"] = loss
        if kwargs.get("metrics") is None and self.default_metrics is not None and \
                str(get_loss(loss)) == str(get_loss(self.default_loss)):
            kwargs["metrics"] = list(self.default_metrics)
        return kwargs

    @classmethod
    def adapt_checkpoint(cls, state: dict[str, np.ndarray], config: HFConfig, spec: ModelSpec) -> dict[str, np.ndarray]:
        """A checkpoint (its keys already the spec's) fitted to a model its config changed: YOLOS
        interpolates its position tables to another image size. As it is, by default."""
        return state

    @classmethod
    def constant_weights(cls, config: HFConfig, spec: ModelSpec) -> dict:
        """Weights computed, not learned (sinusoidal positions): set after any checkpoint and
        never trained."""
        return {}

    def shrink(self, layers: Sequence[int]) -> "TextModel":
        """A smaller model of this family keeping the blocks ``layers`` (DistilBERT's start:
        ``bert.shrink(layers=[0, 2, 4, 6, 8, 10])``); see :func:`llmasos.compress.shrink`."""
        from ..compress.shrinking import shrink

        return shrink(self, layers)

    def encode(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """Texts as the model's inputs: ids (and, where the model takes them, the attention mask
        and token type ids), padded to the longest text."""
        return self.tokens([texts] if isinstance(texts, str) else list(texts), truncation=None).pad()

    def tokens(self, texts: Sequence[str], truncation: bool | None = False) -> Tokens:
        """Texts as the model's inputs, unpadded (:class:`llmasos.texts.Tokens`: a dataset pads
        each batch on its own); a text longer than :attr:`max_length` is an error unless
        ``truncation``."""
        if self.tokenizer is None:
            raise DataError(f"{self.name} has no tokenizer: load it from a folder holding {TOKENIZER_FILE}, or "
                            f"pass tokenizer= (a tokenizers.Tokenizer or a path) to zoo.load")
        dtypes = self.spec.dtypes()
        return tokenize(self.tokenizer, list(texts), {i.name: dtypes[i.name] for i in self.spec.inputs},
                        self._pad_id, self.max_length, truncation)

    @property
    def max_length(self) -> int:
        """The most tokens a text may have: the model's position embeddings."""
        return getattr(self.config, self.positions)

    @property
    def _pad_id(self) -> int:
        return getattr(self.config, "pad_token_id", None) or 0

    def text_inputs(self) -> dict[str, Any] | None:
        """How a server makes this model's inputs from texts, for an exported file's metadata
        (with the tokenizer itself; see :mod:`llmasos.export.metadata`); None without a tokenizer or
        when an input is not a token column (GPT-2's key/value cache)::

            {"inputs": ["input_ids", "attention_mask", "token_type_ids"], "pad_id": 0,
             "max_length": 512, "truncation": True}
        """
        names = [i.name for i in self.spec.inputs]
        if self.tokenizer is None or any(name not in COLUMNS for name in names):
            return None
        return {"inputs": names, "pad_id": self._pad_id, "max_length": self.max_length, "truncation": True}

    def dataset(self, texts: Sequence[str], labels: Any = None, mode: str = "train") -> TextDataset:
        """Texts (and labels) tokenised once, for :meth:`train` and :meth:`evaluate` (the same as
        ``Dataset(texts, labels, text="text", tokenizer=model)``)."""
        return TextDataset(list(texts), labels, text="text", tokenizer=self, mode=mode)


# -- loading ------------------------------------------------------------------------------------


def load_text(family: type[TextModel], info: ModelInfo, framework: str | None = None, *, pretrained: Any = False,
              config: dict | str | os.PathLike | None = None, task: str | None = None, num_labels: int | None = None,
              num_classes: int | None = None, tokenizer: Any = None, freeze: str | None = None,
              input_size: Any = None, logits: bool = False, seed: int | None = None) -> TextModel:
    """``zoo.load`` for a text family (``num_classes`` is another name for ``num_labels``).

    ``config`` (a dict of ``config.json`` keys, or a path to such a file or its folder) sets the
    architecture; with ``pretrained`` it overrides the folder's own. ``tokenizer`` (a
    ``tokenizers.Tokenizer`` or a path to ``tokenizer.json``) replaces the folder's.
    """
    task = task or family.tasks[0]
    if task not in family.tasks:
        raise ZooError(f"{info.name}: task must be one of {', '.join(family.tasks)}, got {task!r}")
    if input_size is not None:
        raise ZooError(f"{info.name}: input_size is for images; text models take sequences of any length up to "
                       f"their maximum positions")
    if num_labels is not None and num_classes is not None and num_labels != num_classes:
        raise ZooError(f"{info.name}: num_labels={num_labels} and num_classes={num_classes} disagree; give one")
    num_labels = num_labels if num_labels is not None else num_classes
    folder = _folder(info, family, pretrained) if pretrained not in (None, False) else None
    settings = read_config(folder, info, family.model_types) if folder is not None else {}
    settings.update(_overrides(config, info, family.model_types))
    hf_config = family.config_class.from_dict(settings, info.name)
    labels = _labels(settings, num_labels) if family.heads(task) else []
    spec = family.build_spec(hf_config, task, len(labels), logits)
    # "backbone" needs a head that trains alone; a family may name groups of layers too
    freezable = (None, *(("backbone",) if family.heads(task) else ()), *family.layer_groups(spec))
    if freeze not in freezable:
        raise ZooError(f"{info.name}: freeze must be one of {freezable} for task {task!r}, got {freeze!r}")
    model = family(spec, hf_config, task, framework, info.name, family.read_tokenizer(tokenizer, folder))
    if model.framework not in info.frameworks:
        raise ZooError(f"{info.name} is available in {', '.join(info.frameworks)}, not {model.framework}")
    loaded = load_weights(info, family, spec, folder, task, hf_config) if folder is not None else {}
    constants = family.constant_weights(hf_config, spec)
    model.build(seed)
    if loaded or constants:
        # a new head keeps its fresh initialisation
        model.set_weights({**model.get_weights(), **loaded, **constants})
    model.metadata = {"zoo": info.name, "family": info.name, "task": task,
                      "pretrained": None if folder is None else str(folder),
                      "config": hf_config.to_dict(), "labels": labels or None}
    model.freeze(set(constants))  # computed weights never train
    if freeze is not None:
        model.freeze(freeze)
    return model


def _folder(info: ModelInfo, family: type[TextModel], pretrained: Any) -> Path:
    """The Hugging Face folder ``pretrained`` names (a file inside one names its folder)."""
    wanted = family.hf_repo if pretrained is True else pretrained
    try:
        path = locate(wanted, info)
    except WeightsNotFoundError as err:
        if pretrained is not True:
            raise
        raise WeightsNotFoundError(
            f"no pretrained weights for {info.name} were found; nothing is downloaded. Looked for the Hugging Face "
            f"repo {family.hf_repo!r} in {hf_repo_folder(family.hf_repo)}. Either fetch it on a machine with internet "
            f"(huggingface-cli download {family.hf_repo}) and copy the hub cache over, or pass pretrained= the path "
            f"of a folder holding {CONFIG_FILE} and model.safetensors") from err
    return path if path.is_dir() else path.parent


def read_config(folder: Path, info: ModelInfo, model_types: tuple[str, ...]) -> dict:
    """A folder's ``config.json``, which must describe one of ``model_types``."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"{folder}: no {CONFIG_FILE}; a Hugging Face folder for {info.name} holds {CONFIG_FILE} "
                           f"and model.safetensors (or pytorch_model.bin)")
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON: {err}") from None
    model_type, architectures = settings.get("model_type"), settings.get("architectures")
    if model_type not in model_types:
        raise WeightsError(f"{path} describes model_type {model_type!r} (architectures {architectures}), not "
                           f"{' or '.join(map(repr, model_types))}: load it with the zoo model of that architecture")
    return settings


def _overrides(config: Any, info: ModelInfo, model_types: tuple[str, ...]) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        return read_config(path if path.is_dir() else path.parent, info, model_types)
    raise ZooError(f"{info.name}: config must be a dict of config.json keys or a path, got {type(config).__name__}")


def _labels(settings: dict, num_labels: int | None) -> list[str]:
    """Class names: the config's ``id2label`` when it has ``num_labels`` entries, else LABEL_i."""
    id2label = settings.get("id2label") or {}
    count = num_labels if num_labels is not None else len(id2label) or settings.get("num_labels", 2)
    if len(id2label) == count:
        return [str(id2label.get(str(i), id2label.get(i))) for i in range(count)]
    return [f"LABEL_{i}" for i in range(count)]


def load_tokenizer(source: Any, folder: Path | None) -> Any:
    """A ``tokenizers.Tokenizer`` from ``source`` (one already, or a path), else from the folder's
    ``tokenizer.json`` when it has one; None when there is none."""
    if source is not None and not isinstance(source, (str, os.PathLike)):
        return source
    path = Path(source) if source is not None else folder / TOKENIZER_FILE if folder is not None else None
    if path is None or (source is None and not path.is_file()):
        return None
    if path.is_dir():
        path = path / TOKENIZER_FILE
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises its own Exception subclasses for a missing or bad file
        raise ZooError(f"{path}: not a tokenizers tokenizer.json ({err})") from None


def load_weights(info: ModelInfo, family: type[TextModel], spec: ModelSpec, folder: Path, task: str,
                 config: HFConfig | None = None) -> dict:
    """Neutral weights from a folder's checkpoint. Head layers the checkpoint lacks (a base model
    loaded for classification) or sizes differently (another ``num_labels``) keep their fresh
    initialisation, with a warning on the ``llmasos.zoo`` logger."""
    state = read(folder, info)
    if info.adapt_state_dict is not None:
        state = info.adapt_state_dict(state, spec)
    if config is not None:
        state = family.adapt_checkpoint(state, config, spec)
    expected = spec.weight_shapes()
    skip = []
    for head in family.heads(task):
        found = {key: value for key, value in state.items() if key.rpartition(".")[0] == head}
        kernel = found.get(f"{head}.weight")
        if kernel is None or kernel.shape[0] != expected[head]["kernel"][1]:
            skip.append(head)
            log.warning("%s: %s has %s; %r starts from a random initialisation", info.name, folder,
                        "no head" if kernel is None else f"a head of {kernel.shape[0]} labels", head)
    return to_neutral(state, spec, tuple(skip), source=str(folder))
