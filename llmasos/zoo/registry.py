"""The zoo's registry: one builder per model name, and the metadata that travels with it.

A family module (one file per architecture family) registers a builder that returns a neutral
:class:`~llmasos.spec.ModelSpec`; the registry never sees a framework::

    @register(weights=torchvision_weights("resnet18-f37072fd.pth", hf_repo="timm/resnet18.tv_in1k"))
    def resnet18(**options) -> ModelSpec:
        return resnet(basic_block, (2, 2, 2, 2), **options)

The builder's name is the model's name and its module's name the family. A plugin package adds
models through the entry point group ``llmasos.zoo`` (``name = "module:builder"``): the zoo imports
them after its own families, the first time it is asked for a model. A builder takes the
keyword options ``num_classes``, ``input_size`` (C, H, W) and ``logits`` (leave out the final
softmax). Registering a name twice raises.

>>> from llmasos import zoo
>>> info = zoo.registry.get("resnet18")
>>> info.family, info.classifier, info.weights.file, f"{info.parameter_count:,}"
('resnet', 'fc', 'resnet18-f37072fd.pth', '11,689,512')
"""

from __future__ import annotations

import difflib
import importlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from .. import families, plugins
from ..errors import ZooError
from ..layers import get_kind
from ..spec import ModelSpec

# torchvision's ImageNet normalisation (RGB, on pixels scaled to [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Builder = Callable[..., ModelSpec]
# (state dict, spec) -> state dict: a family's own fix-up of a checkpoint before names are mapped
StateAdapter = Callable[[dict, ModelSpec], dict]


@dataclass(frozen=True)
class WeightSource:
    """Where a model's standard pretrained weights come from. Nothing is downloaded: ``url`` only
    tells users where to fetch ``file`` on a machine with internet access."""

    file: str                   # the file name in torchvision's cache, $TORCH_HOME/hub/checkpoints
    url: str                    # where that file is published
    hf_repo: str | None = None  # a Hugging Face repo with the same tensors and names (timm's), if any
    fetched_by: str | None = None  # the publisher's call that downloads it (None: torchvision's weights='DEFAULT')


def torchvision_weights(file: str, hf_repo: str | None = None) -> WeightSource:
    """A torchvision checkpoint, published under download.pytorch.org/models/ by its file name."""
    return WeightSource(file, f"https://download.pytorch.org/models/{file}", hf_repo)


@dataclass(frozen=True, repr=False)
class ModelInfo:
    """One registered model: how to build it and what goes with it (timm's ``PretrainedCfg``).

    >>> from llmasos import zoo
    >>> info = next(info for info in zoo.list() if info.name == "resnet18")
    >>> info.input_size, info.classifier, info.num_classes
    ((3, 224, 224), 'fc', 1000)
    """

    name: str
    family: str
    builder: Builder = field(compare=False)
    task: str = "image-classification"
    frameworks: tuple[str, ...] = ("torch", "tf")
    input_size: tuple[int, int, int] = (3, 224, 224)  # (C, H, W) the weights were trained at
    crop_pct: float = 0.875                           # centre crop / resized shorter side (224 / 256)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    classifier: str = "fc"                            # the head layer num_classes replaces
    labels: str | None = "imagenet-1k"                # the label set of the standard weights
    weights: WeightSource | None = None
    adapt_state_dict: StateAdapter | None = field(default=None, compare=False)
    test_variant: bool = False                        # a tiny model for fast tests
    # the Model subclass of a Hugging Face family (text, speech), which needs more than a spec and a
    # checkpoint (a config, a tokenizer): zoo.load goes through zoo.text.load_text, and Model.load
    # of its .h5 gives one back; its builder takes no arguments for the default spec
    model_class: type | None = field(default=None, compare=False)
    # the Model subclass zoo.load makes a model built from its spec and checkpoint as (FaceNet: embed,
    # verify); Model.load of its .h5 gives one back through the family of its module's name
    model_subclass: type | None = field(default=None, compare=False)

    def spec(self, *, num_classes: int | None = None, input_size: Any = None, logits: bool = False) -> ModelSpec:
        """The neutral spec; ``input_size`` is an int (square), (H, W) or (C, H, W)."""
        if self.model_class is not None:
            return self.builder()
        classes = self.num_classes if num_classes is None else num_classes
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
            raise ZooError(f"{self.name}: num_classes must be a positive int, got {num_classes!r}")
        return self.builder(num_classes=classes, input_size=self.image_size(input_size), logits=bool(logits))

    def image_size(self, size: Any = None) -> tuple[int, int, int]:
        """``size`` as (C, H, W), filled in from the default input size."""
        if size is None:
            return self.input_size
        items = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (list, tuple)) else ()
        if len(items) == 2:
            items = (self.input_size[0], *items)
        if len(items) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
            raise ZooError(f"{self.name}: input_size must be an int, (H, W) or (C, H, W) of positive ints, "
                           f"got {size!r}")
        return items

    @cached_property
    def parameter_count(self) -> int:
        """Parameters of the default model, counted from its spec (no framework needed); BatchNorm
        running statistics are not parameters, as torchvision and timm count."""
        spec = self.spec()
        statistics = {layer.name: get_kind(layer.kind).statistics for layer in spec.layers}
        return sum(math.prod(shape) for layer, weights in spec.weight_shapes().items()
                   for name, shape in weights.items() if name not in statistics[layer])

    def __repr__(self) -> str:
        weights = self.weights.file if self.weights else "none"
        return (f"ModelInfo({self.name!r}, task={self.task!r}, frameworks={'/'.join(self.frameworks)}, "
                f"parameters={_millions(self.parameter_count)}, input={'x'.join(map(str, self.input_size))}, "
                f"weights={weights})")


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count:,}"


_REGISTRY: dict[str, ModelInfo] = {}
# The zoo's family modules, in the order zoo.list() shows them. Each registers its models when
# imported, which the first lookup here does: Model.load of a BERT file imports only .bert.
FAMILIES = ("resnet", "vgg", "vit", "yolos", "facenet", "bert", "gpt2", "marian", "wav2vec2")
PLUGIN_GROUP = "llmasos.zoo"
"""The entry point group of plugin packages' zoo models: ``name = "module:builder"``, a builder
decorated with :func:`register` (importing the module registers it)."""
_families_loaded = False
_broken_plugins: dict[str, ZooError] = {}   # plugin models that failed to load, raised when asked for


def register(**info: Any) -> Callable[[Builder], Builder]:
    """Register the decorated builder under its function name, with ``info`` as :class:`ModelInfo`
    fields. A name registered twice raises :class:`ZooError` instead of replacing the first.

    The builder takes ``num_classes``, ``input_size`` (C, H, W) and ``logits`` and returns a spec:

    ```python
    @register(input_size=(3, 32, 32), num_classes=10, classifier="head", labels=None)
    def small_cnn(num_classes, input_size, logits):
        spec = ModelSpec.sequential(input_size).add("Conv2D", 8, kernel_size=3, activation="relu")
        spec.add("GlobalAvgPool2D").add("Dense", num_classes, name="head",
                                        activation=None if logits else "softmax")
        return spec
    zoo.load("small_cnn", num_classes=5)
    ```
    """

    def decorate(builder: Builder) -> Builder:
        name = info.pop("name", builder.__name__)
        if name in _REGISTRY:
            raise ZooError(f"zoo model {name!r} is registered twice (first by the {_REGISTRY[name].family} family)")
        family = info.pop("family", builder.__module__.rsplit(".", 1)[-1])
        _REGISTRY[name] = ModelInfo(name=name, family=family, builder=builder, **info)
        if info.get("model_class") is not None:
            # Model.load finds the class by this name in the family registry, without the zoo
            families.register(name, info["model_class"])
        return builder

    return decorate


def get(name: str) -> ModelInfo:
    """The entry registered as ``name``, or a :class:`ZooError` naming the known ones (or, for a
    plugin's model that failed to load, saying why)."""
    _load_families()
    if name in _broken_plugins:
        raise _broken_plugins[name]
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ZooError(f"no zoo model named {name!r}{hint} Known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def entries() -> list[ModelInfo]:
    """Every registered model, family by family in :data:`FAMILIES` order (others after them),
    each family's in registration order."""
    _load_families()
    rank = {family: position for position, family in enumerate(FAMILIES)}
    return sorted(_REGISTRY.values(), key=lambda info: rank.get(info.family, len(FAMILIES)))


def _load_families() -> None:
    global _families_loaded
    if _families_loaded:
        return
    _families_loaded = True     # first, so a family that looks a model up while importing does not recurse
    try:
        for family in FAMILIES:
            importlib.import_module(f"{__package__}.{family}")
    except BaseException:
        _families_loaded = False
        raise
    _load_plugins()


def _load_plugins() -> None:
    """Import the models plugin packages declare; one that fails is kept as an error for its name,
    so it breaks neither the zoo's other models nor ``zoo.list()``."""
    def taken(name: str) -> str | None:
        return f"the zoo's {_REGISTRY[name].family} family" if name in _REGISTRY else None

    for entry in plugins.declared(PLUGIN_GROUP, taken, what="zoo model"):
        try:
            plugins.resolve(entry.value, f"zoo model {entry.name!r} ({entry.origin})", ZooError)
            if entry.name not in _REGISTRY:
                raise ZooError(f"zoo model {entry.name!r} ({entry.origin}) was not registered by importing it: "
                               f"decorate its builder with llmasos.zoo.registry.register(name={entry.name!r})")
        except ZooError as err:
            _broken_plugins[entry.name] = err


def table(infos: list[ModelInfo]) -> str:
    """The entries as an aligned text table, as ``llmasos zoo list`` prints it."""
    rows = [("Name", "Task", "Frameworks", "Params", "Input", "Pretrained weights")]
    for info in infos:
        source = info.weights.file if info.weights else "-"
        if info.weights and info.weights.hf_repo:
            source += f" or hf:{info.weights.hf_repo}"
        rows.append((info.name + (" (test)" if info.test_variant else ""), info.task, "/".join(info.frameworks),
                     _millions(info.parameter_count), "x".join(map(str, info.input_size)), source))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)

