"""The model zoo: named architectures written once in the neutral spec, built in PyTorch or
TensorFlow, with pretrained weights from local files and caches (never downloaded).

>>> from llmasos import zoo
>>> [info.name for info in zoo.list()][:3]
['resnet18', 'resnet34', 'resnet50']

Loading gives an ordinary :class:`llmasos.Model` (train, evaluate, predict, save, export)::

    net = zoo.load("resnet18", framework="tf", pretrained=True, num_classes=10, freeze="backbone")
    net.train(Dataset(images, labels, mode="train"), Optimizer("AdamW", lr=3e-4), epochs=3)
    zoo.classify(zoo.load("resnet50", pretrained=True), PIL.Image.open("dog.jpg"))

One file per family registers its models (:mod:`.resnet`, :mod:`.vgg`, ...), imported on the first
lookup (``registry.FAMILIES``); :mod:`.registry` holds the metadata, :mod:`.weights` finds and maps checkpoints, :mod:`.preprocess` prepares images.
"""

from __future__ import annotations

import builtins
from typing import Any

from ..errors import ZooError
from ..model import Model
from . import registry  # imports the family modules (registry.FAMILIES) on the first lookup
from .preprocess import classify, prepare_images, top_k
from .registry import ModelInfo, register
from .text import load_text
from .weights import load_pretrained

__all__ = ["list", "load", "register", "ModelInfo", "classify", "prepare_images", "top_k"]

FREEZE = ("backbone",)


def list(task: str | None = None) -> builtins.list[ModelInfo]:  # noqa: A001  (the public API is zoo.list())
    """Every registered model (or those of one ``task``), each a :class:`ModelInfo` with name,
    task, frameworks, parameter count, input size and weight source.

    >>> from llmasos import zoo
    >>> [info.name for info in zoo.list("translation")]
    ['marian']
    """
    return [info for info in registry.entries() if task is None or info.task == task]


def load(name: str, framework: str | None = None, *, pretrained: Any = False, num_classes: int | None = None,
         freeze: str | None = None, input_size: Any = None, logits: bool = False, seed: int | None = None,
         device: str = "cpu", **options: Any) -> Model:
    """A zoo model as an :class:`llmasos.Model`, built in ``framework``.

    * ``pretrained``: False (random init), True (the standard checkpoint from the torchvision or
      Hugging Face cache), or a path / file name / Hugging Face repo id (see :mod:`.weights`).
    * ``num_classes``: replace the classifier head with a new one of that size (a pretrained
      head of another size is skipped, with a warning).
    * ``freeze="backbone"``: train only the head (BatchNorm statistics stay fixed too); the same
      as ``model.freeze("backbone")``, and ``model.unfreeze()`` undoes it.
    * ``input_size``: an int, (H, W) or (C, H, W); default the model's own (224 for ImageNet).
    * ``logits``: output raw scores instead of softmax probabilities (as torchvision's models do).
    * ``seed``: repeatable initialisation of whatever the checkpoint does not cover.
    * ``device``: where the weights go ("cpu", "cuda", "cuda:1", "mps", "auto"; see ``Model.to``).
    * ``options``: what Hugging Face families take (text and speech models: ``config``, ``task``,
      ``num_labels``, ``tokenizer``; see :func:`.text.load_text`).

    ```python
    net = zoo.load("resnet18", framework="tf", pretrained=True, num_classes=10, freeze="backbone")
    tiny = zoo.load("resnet_tiny", framework="torch", seed=0)     # random weights, 32x32 inputs
    bert = zoo.load("bert", config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                    "intermediate_size": 64}, task="text-classification", num_labels=2)
    ```
    """
    info = registry.get(name)
    if info.model_class is not None:
        return load_text(info.model_class, info, framework, pretrained=pretrained, num_classes=num_classes,
                         freeze=freeze, input_size=input_size, logits=logits, seed=seed, **options).to(device)
    if options:
        raise ZooError(f"{name}: unknown option(s) {', '.join(sorted(options))}")
    if freeze is not None and freeze not in FREEZE:
        raise ZooError(f"freeze must be None or one of {', '.join(map(repr, FREEZE))}, got {freeze!r}")
    spec = info.spec(num_classes=num_classes, input_size=input_size, logits=logits)
    model = (info.model_subclass or Model)(spec=spec, framework=framework, name=name)
    if model.framework not in info.frameworks:
        raise ZooError(f"{name} is available in {', '.join(info.frameworks)}, not {model.framework}")
    loaded, source = {}, None
    if pretrained is not None and pretrained is not False:
        # read and checked before the framework is even imported, so a bad checkpoint fails fast
        loaded, source = load_pretrained(info, spec, pretrained, replace_head=num_classes is not None)
    model.build(seed)
    if source is not None:
        # layers the checkpoint does not cover (a replaced head) keep their fresh initialisation
        model.set_weights({**model.get_weights(), **loaded})
    head_replaced = num_classes is not None and num_classes != info.num_classes
    _, height, width = model.spec.inputs[0].shape
    model.metadata = {
        "zoo": name, "task": info.task, "pretrained": None if source is None else str(source),
        **({"family": info.family} if info.model_subclass is not None else {}),
        "head": [info.classifier], "labels": None if head_replaced else info.labels,
        "preprocess": {"size": [height, width], "crop_pct": info.crop_pct, "mean": [*info.mean], "std": [*info.std]},
    }
    if freeze is not None:
        model.freeze(freeze)
    return model.to(device)
