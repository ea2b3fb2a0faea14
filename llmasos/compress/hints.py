"""Hint matching (FitNets, Romero et al. 2015): a student layer's output regressed on a teacher
layer's output through a learned linear projection, beside the distillation loss.

>>> history = compress.distill(teacher, student, data, opt, hints={"hidden": "dense"},
...                            hint_weight=1.0)   # doctest: +SKIP

Everything runs through the student's ordinary ``train``, in either framework: the student is
trained as a copy of its spec with, per hint, a bias-free projection to the teacher layer's width
(``Dense`` on a feature vector, a 1x1 ``Conv2D`` on a ``(C, H, W)`` map of the teacher's height and
width, then ``Flatten``), joined to the logits by one ``Concatenate``: its output row is
``[logits, *projected hints]`` and its target row ``[label, *teacher_logits, *teacher hints]``, so
:class:`HintDistillation` sees both. Afterwards the student takes back its own layers' weights;
the projections are training aids and are dropped, as FitNets' regressors are.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import SpecError, TrainingError
from ..losses import Distillation, _builtin   # the loss registry's own hook: a trainer looks losses up by name

OUTPUT = "distill_outputs"
"""The name of the layer joining the student's logits and its projected hints while it trains."""


def projection_name(student_layer: str) -> str:
    """The name of the projection layer trained for ``student_layer``'s hint."""
    return f"hint_projection_{student_layer}"


@_builtin
class HintDistillation(Distillation):
    """:class:`~llmasos.losses.Distillation` plus FitNets' hint term: per row,
    ``KD + hint_weight · Σ_hints mean_features((P·s_h − t_h)²)``, with ``P·s_h`` the student
    layer's projected output and ``t_h`` the teacher layer's. ``classes`` and ``sizes`` (each hint's
    feature count) say where the columns of ``[logits, *hints]`` and ``[label, *teacher_logits,
    *teacher_hints]`` start; :func:`llmasos.compress.distill` sets them."""

    name = "hint_distillation"
    aliases = ()

    @classmethod
    def defaults(cls):
        return {**Distillation.defaults(), "hint_weight": 1.0, "classes": 1, "sizes": (1,)}

    def check(self):
        super().check()
        if not self.hint_weight >= 0:
            raise TrainingError(f"hint_weight must be >= 0, got {self.hint_weight} (1.0 weighs the hint term "
                                f"like the distillation loss)")
        self.params["sizes"] = tuple(int(s) for s in self.sizes)

    def call(self, ops, y_true, y_pred):
        classes, total = int(self.classes), sum(self.sizes)
        y_true = ops.reshape(y_true, (-1, 1 + classes + total))
        loss = super().call(ops, y_true[:, :1 + classes], y_pred[:, :classes])
        start = classes
        for size in self.sizes:
            diff = y_pred[:, start:start + size] - y_true[:, 1 + start:1 + start + size]
            loss = loss + self.hint_weight * ops.mean(diff * diff, axis=-1)
            start += size
        return loss


def check_hints(hints: Any, hint_weight: float) -> dict[str, str]:
    """``hints`` as ``{student layer: teacher layer}``, checked for form (layers are checked later)."""
    if not isinstance(hints, Mapping) or not hints or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in hints.items()):
        raise SpecError(f"hints= maps student layer names to teacher layer names, e.g. {{'dense': 'dense_1'}}; "
                        f"got {hints!r}")
    if not isinstance(hint_weight, (int, float)) or not hint_weight >= 0:
        raise TrainingError(f"hint_weight must be a number >= 0, got {hint_weight!r}")
    return dict(hints)


def _layer_shape(spec, name: str, whose: str) -> tuple:
    shapes = spec.shapes()
    if name not in {layer.name for layer in spec.layers}:
        raise SpecError(f"hints: the {whose} has no layer {name!r}; its layers: "
                        f"{', '.join(layer.name for layer in spec.layers)}")
    return tuple(shapes[name])


def hint_student(student: Any, teacher_spec: Any, hints: dict[str, str], seed: int | None) -> tuple[Any, list[int]]:
    """The model trained in the student's place: its spec (softmax left out of the logits) plus a
    projection per hint, output ``[logits, *projected hints]``, holding the student's weights (the
    student is built with ``seed`` first when it is not yet). Returns it and each hint's size."""
    from ..model import Model

    spec = type(student.spec).from_dict(student.spec.to_dict())
    logits = spec.logits_layer()
    if logits is not None:
        spec.layer(logits).config["activation"] = "linear"
    if len(spec.outputs) != 1 or len(spec.shapes()[spec.outputs[0]]) != 1:
        raise SpecError("hints need a student with one output of class scores (a vector per row)")
    joined, sizes = [spec.outputs[0]], []
    for student_layer, teacher_layer in hints.items():
        s = _layer_shape(spec, student_layer, "student")
        t = _layer_shape(teacher_spec, teacher_layer, "teacher")
        where = f"hint {student_layer!r} -> {teacher_layer!r}"
        if None in s or None in t:
            raise SpecError(f"{where}: shapes {s} and {t} have dynamic sizes (sequences); hints take layers of "
                            f"fixed shape")
        name = projection_name(student_layer)
        if len(s) == 1 and len(t) == 1:
            spec.add("Dense", t[0], name=name, inputs=student_layer, use_bias=False)
            joined.append(name)
        elif len(s) == 3 and len(t) == 3 and s[1:] == t[1:]:
            spec.add("Conv2D", t[0], name=name, inputs=student_layer, kernel_size=1, use_bias=False)
            joined.append(spec.add("Flatten", name=f"{name}_flat", inputs=name).last)
        else:
            raise SpecError(f"{where}: the student layer gives {s} per row and the teacher layer {t}; a hint "
                            f"pairs feature vectors (any widths) or (C, H, W) maps of the same height and width")
        sizes.append(int(np.prod(t)))
    spec.add("Concatenate", name=OUTPUT, inputs=joined)
    spec.set_outputs(OUTPUT)
    model = Model(spec=spec, framework=student.framework, name=student.name, device=str(student.device))
    if not student.built:
        student.build(seed)
    model.build(seed)
    weights = model.get_weights()
    weights.update(student.get_weights())
    model.set_weights(weights)
    return model, sizes


def take_back(student: Any, trained: Any) -> None:
    """The student's own layers' weights from the model trained in its place."""
    weights = trained.get_weights()
    student.set_weights({layer: weights[layer] for layer in student.get_weights()})
