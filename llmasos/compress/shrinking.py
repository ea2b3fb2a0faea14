"""A smaller transformer started from a bigger one: the chosen blocks, embeddings and heads kept,
as DistilBERT starts its student from every other layer of BERT (Sanh et al., 2019)::

    from llmasos import compress, zoo
    teacher = zoo.load("bert", pretrained="bert-folder", task="text-classification", num_labels=2)
    student = compress.shrink(teacher, layers=[0, 2, 4, 6, 8, 10])     # or teacher.shrink(layers=...)
    history = compress.distill(teacher, student, data, Optimizer("AdamW", lr=5e-5))

The student is an ordinary model of the same family (its config says how many blocks it has): it
trains in either framework, saves, exports and serves. Its outputs are those of the Hugging Face
model of the same family built with the kept blocks only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

from ..errors import ZooError

# family (as saved in a model's metadata) -> (the blocks' layer-name prefix, the config's block count)
BLOCKS: dict[str, tuple[str, str]] = {
    "bert": ("encoder.layer", "num_hidden_layers"),
    "gpt2": ("h", "n_layer"),
    "vit": ("encoder.layer", "num_hidden_layers"),
}


def shrink(model: Any, layers: Sequence[int]) -> Any:
    """A new model of ``model``'s family keeping the blocks ``layers`` (indices, in increasing
    order, each once) with their weights, and every weight outside the blocks (embeddings, final
    norm, pooler, head). ``model`` is unchanged; the student is built in its framework.

    Raises :class:`~llmasos.errors.ZooError` for a family without blocks to drop, or indices out of
    range, repeated or out of order.
    """
    family = (getattr(model, "metadata", None) or {}).get("family")
    if family not in BLOCKS:
        raise ZooError(f"shrink keeps blocks of a transformer family ({', '.join(BLOCKS)}); "
                       f"{getattr(model, 'name', model)!r} is {'a ' + repr(family) + ' model' if family else 'not one'}")
    prefix, count_field = BLOCKS[family]
    count = getattr(model.config, count_field)
    kept = _check_layers(layers, count, model.name)
    config = dataclasses.replace(model.config, **{count_field: len(kept)})
    spec = model.build_spec(config, model.task, _num_labels(model), model.spec.final_activation() != "softmax")
    student = type(model)(spec, config, model.task, model.framework, model.name, model.tokenizer)
    student.build()
    student.set_weights(_renamed(model.get_weights(), prefix, {old: new for new, old in enumerate(kept)}))
    student.metadata = {**model.metadata, "config": config.to_dict(), "shrunk_from": {"blocks": count,
                                                                                     "kept": list(kept)}}
    student.freeze(set(student.constant_weights(config, spec)))  # computed weights never train
    return student


def _check_layers(layers: Sequence[int], count: int, name: str) -> list[int]:
    kept = list(layers) if isinstance(layers, (list, tuple, range)) else None
    if not kept or not all(isinstance(i, int) and not isinstance(i, bool) for i in kept):
        raise ZooError(f"layers must be a non-empty list of block indices 0..{count - 1}, got {layers!r}")
    outside = [i for i in kept if not 0 <= i < count]
    if outside:
        raise ZooError(f"{name} has blocks 0..{count - 1}; {outside} are out of range")
    if len(set(kept)) != len(kept):
        raise ZooError(f"layers {kept} name a block twice; each kept block is given once")
    if kept != sorted(kept):
        raise ZooError(f"layers {kept} are out of order; give them in increasing order ({sorted(kept)})")
    return kept


def _num_labels(model: Any) -> int:
    labels = (model.metadata or {}).get("labels")
    return len(labels) if labels else 0


def _renamed(weights: dict, prefix: str, new_index: dict[int, int]) -> dict:
    """The weights of kept blocks under their new indices, dropped blocks' left out, the rest as is."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    out = {}
    for layer, values in weights.items():
        found = pattern.match(layer)
        if found is None:
            out[layer] = values
        elif int(found.group(1)) in new_index:
            out[f"{prefix}.{new_index[int(found.group(1))]}.{layer[found.end():]}"] = values
    return out
