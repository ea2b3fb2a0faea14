"""Losses, written once with the neutral ops and run by every framework.

A loss is named (``loss="focal"``) or an object with its parameters (``loss=losses.Focal(gamma=1)``);
either way the model keeps its canonical text — the name, with the parameters that differ from
the defaults — which is what ``train``'s history, checkpoints and ``.h5`` files record:

>>> str(Focal(gamma=1.0)), str(get("cross_entropy")), str(get("focal(gamma=1.0)"))
('focal(gamma=1.0)', 'cross_entropy', 'focal(gamma=1.0)')
>>> resolve_loss("softmax", None), resolve_loss("sigmoid", None), resolve_loss("linear", None)
('cross_entropy', 'binary_cross_entropy', 'mse')

Each loss's :meth:`Loss.call` maps ``(ops, y_true, y_pred)`` to one value per sample (or per
element, averaged per sample); the adapters reduce those as Keras' ``sum_over_batch_size`` does,
``sum(w_i * l_i) / batch`` with per-sample weights ``w`` (1 without them). ``ops`` is the neutral
op set (:mod:`llmasos.ops`) plus the few loss primitives of :class:`LossOps`, so a built-in loss
and a user's are the same code in torch and TensorFlow.

A user loss is a function of ``(ops, y_true, y_pred)``, registered by name so that a saved model
names it::

    @losses.register("log_cosh")
    def log_cosh(ops, y_true, y_pred):
        error = y_pred - y_true
        return ops.log((ops.exp(error) + ops.exp(-error)) / 2)

    model.train(X, y, loss="log_cosh")          # or loss=log_cosh

Classification losses take logits: a final softmax or sigmoid is left out while training.
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

from .errors import TrainingError
from .ops import Ops

# Targets a loss takes, for label checks and metrics: class ids and logits over the classes;
# 0/1 targets and one logit per unit; real values; padded id sequences.
TASKS = ("classes", "binary", "values", "sequence")
# the logits a CTC model gives padding frames for every class but the blank (the blank's is 0):
# the CTC loss counts only the other frames (see CTC)
CTC_PADDING_LOGIT = -1e4


class LossOps(Ops):
    """The neutral op set plus what losses need beyond it; every adapter implements these."""

    @abstractmethod
    def log_softmax(self, x: Any, axis: int = -1) -> Any:
        """``log(softmax(x))``, computed stably."""

    @abstractmethod
    def softplus(self, x: Any) -> Any:
        """``log(1 + e ** x)``, computed stably."""

    @abstractmethod
    def cast(self, x: Any, dtype: str) -> Any:
        """``x`` as ``"float32"`` or ``"int64"`` (booleans included)."""

    @abstractmethod
    def sparse_cross_entropy(self, logits: Any, labels: Any) -> Any:
        """``-log softmax(logits)[label]`` per position: logits ``(..., C)``, labels ``(...)`` in ``[0, C)``."""

    @abstractmethod
    def ctc(self, log_probs: Any, labels: Any, label_lengths: Any, blank: int, zero_infinity: bool,
            frame_lengths: Any = None) -> Any:
        """CTC's negative log-likelihood per sample: ``log_probs`` ``(N, T, C)``, the first
        ``frame_lengths[i]`` frames of row i counting (every frame when None), ``labels`` ``(N, S)``
        non-negative, the first ``label_lengths[i]`` of row i counting; ``zero_infinity`` makes an
        impossible alignment 0 (and its gradient)."""


class Loss(ABC):
    """A loss and its parameters. Subclasses set ``name``, ``task``, ``logits`` and implement :meth:`call`."""

    name: ClassVar[str]
    task: ClassVar[str] = "values"
    logits: ClassVar[bool] = False       # takes logits (a final softmax/sigmoid is left out)
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        defaults = self.defaults()
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TrainingError(f"loss {self.name!r} has no parameter {', '.join(unknown)}; "
                                f"it takes {', '.join(defaults) or 'none'}")
        self.params = {**defaults, **params}
        self.check()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {}

    def check(self) -> None:
        """Raise a TrainingError for parameters out of range."""

    @property
    def target_dtype(self) -> str:
        return "int64" if self.task in ("classes", "sequence") else "float32"

    def for_activation(self, final_activation: str) -> "Loss":
        """The loss for a model ending in ``final_activation`` (a loss whose form depends on it, focal, resolves here)."""
        return self

    @abstractmethod
    def call(self, ops: LossOps, y_true: Any, y_pred: Any) -> Any:
        """Per-sample (or per-element) losses."""

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(name)

    def __str__(self) -> str:
        changed = {k: v for k, v in self.params.items() if v != self.defaults()[k]}
        if not changed:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __repr__(self) -> str:
        return f"<loss {self}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Loss) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


_REGISTRY: dict[str, type[Loss] | Callable] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _builtin(cls: type[Loss]) -> type[Loss]:
    _REGISTRY[cls.name] = cls
    for alias in cls.aliases:
        _ALIASES[alias] = cls.name
    return cls


@_builtin
class CrossEntropy(Loss):
    """Softmax cross-entropy on integer class ids, with torch's ``label_smoothing`` (``F.cross_entropy``)."""

    name = "cross_entropy"
    task = "classes"
    logits = True
    aliases = ("crossentropy", "categorical_cross_entropy", "categorical_crossentropy",
               "sparse_categorical_crossentropy", "sparse_categorical_cross_entropy", "ce")

    @classmethod
    def defaults(cls):
        return {"label_smoothing": 0.0}

    def check(self):
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise TrainingError(f"label_smoothing must be in [0, 1], got {self.label_smoothing}")

    def call(self, ops, y_true, y_pred):
        nll = ops.sparse_cross_entropy(y_pred, ops.reshape(y_true, (-1,)))
        if not self.label_smoothing:
            return nll
        uniform = -ops.mean(ops.log_softmax(y_pred), axis=-1)
        return nll * (1.0 - self.label_smoothing) + uniform * self.label_smoothing


def _sigmoid_cross_entropy(ops, targets, logits):
    # max(x, 0) - x t + log(1 + e^-|x|): never exponentiates a large number
    return ops.relu(logits) - logits * targets + ops.softplus(-ops.abs(logits))


@_builtin
class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy per output unit on 0/1 (or soft) targets (``F.binary_cross_entropy_with_logits``)."""

    name = "binary_cross_entropy"
    task = "binary"
    logits = True
    aliases = ("binary_crossentropy", "bce")

    def call(self, ops, y_true, y_pred):
        return _sigmoid_cross_entropy(ops, ops.reshape(y_true, _like(y_pred)), y_pred)


def _like(y_pred) -> tuple:
    """A reshape target with y_pred's shape, batch kept dynamic (0 keeps a size, as ONNX's Reshape)."""
    return (0,) + tuple(-1 if i == len(y_pred.shape) - 1 else 0 for i in range(1, len(y_pred.shape)))


@_builtin
class MSE(Loss):
    name = "mse"
    aliases = ("mean_squared_error", "l2")

    def call(self, ops, y_true, y_pred):
        error = y_pred - ops.reshape(y_true, _like(y_pred))
        return error * error


@_builtin
class MAE(Loss):
    name = "mae"
    aliases = ("mean_absolute_error", "l1")

    def call(self, ops, y_true, y_pred):
        return ops.abs(y_pred - ops.reshape(y_true, _like(y_pred)))


@_builtin
class Huber(Loss):
    """``0.5 e²`` where ``|e| < delta``, else ``delta (|e| - delta / 2)`` (``F.huber_loss``)."""

    name = "huber"
    aliases = ("huber_loss", "smooth_l1")

    @classmethod
    def defaults(cls):
        return {"delta": 1.0}

    def check(self):
        if not self.delta > 0:
            raise TrainingError(f"huber's delta must be > 0, got {self.delta}")

    def call(self, ops, y_true, y_pred):
        error = ops.abs(y_pred - ops.reshape(y_true, _like(y_pred)))
        return ops.where(error < self.delta, error * error * 0.5, (error - 0.5 * self.delta) * self.delta)


@_builtin
class Focal(Loss):
    """Focal loss (Lin et al.): binary as ``torchvision.ops.sigmoid_focal_loss`` (``alpha`` weighs
    positives, ``alpha < 0`` turns it off); multi-class on integer ids for a softmax model, as Keras'
    ``CategoricalFocalCrossentropy``: ``-alpha (1 - p_y)^gamma log p_y``. ``multiclass`` is taken
    from the model's last activation (softmax) unless given."""

    name = "focal"
    logits = True
    aliases = ("focal_loss", "sigmoid_focal")

    @classmethod
    def defaults(cls):
        return {"gamma": 2.0, "alpha": 0.25, "multiclass": None}

    def check(self):
        if self.gamma < 0:
            raise TrainingError(f"focal's gamma must be >= 0, got {self.gamma}")

    @property
    def task(self):  # type: ignore[override]
        return "classes" if self.multiclass else "binary"

    def for_activation(self, final_activation):
        if self.multiclass is not None:
            return self
        return Focal(**{**self.params, "multiclass": final_activation == "softmax"})

    def call(self, ops, y_true, y_pred):
        if self.multiclass:
            log_p = -ops.sparse_cross_entropy(y_pred, ops.reshape(y_true, (-1,)))
            return -self.alpha * ops.pow(1.0 - ops.exp(log_p), self.gamma) * log_p
        targets = ops.reshape(y_true, _like(y_pred))
        p = ops.sigmoid(y_pred)
        p_t = p * targets + (1.0 - p) * (1.0 - targets)
        loss = _sigmoid_cross_entropy(ops, targets, y_pred) * ops.pow(1.0 - p_t, self.gamma)
        if self.alpha >= 0:
            loss = loss * (targets * self.alpha + (1.0 - targets) * (1.0 - self.alpha))
        return loss


@_builtin
class CTC(Loss):
    """Connectionist temporal classification on logits ``(N, T, C)`` and label rows padded with -100
    (any negative), as transformers' ``Wav2Vec2ForCTC`` with ``ctc_loss_reduction="mean"``: each
    sample's negative log-likelihood divided by its label length (``F.ctc_loss``'s "mean").

    Frames that are a masked model's padding are left out, as transformers leaves out the frames
    past a clip's ``attention_mask``: a Wav2Vec2 that takes a mask gives a padding frame the blank's
    logit 0 and :data:`CTC_PADDING_LOGIT` (-1e4) for every other class, which no real frame comes
    near (a loss sees only the logits and labels, not the model's mask)."""

    name = "ctc"
    task = "sequence"
    logits = True

    @classmethod
    def defaults(cls):
        return {"blank": 0, "zero_infinity": False}

    def call(self, ops, y_true, y_pred):
        valid = y_true >= 0
        lengths = ops.sum(ops.cast(valid, "int64"), axis=1)
        labels = ops.where(valid, y_true, 0)
        # a padding frame's logits sum to (classes - 1) * CTC_PADDING_LOGIT; a real frame's are ~1e4 times smaller
        real = ops.sum(y_pred, axis=-1) > 0.5 * CTC_PADDING_LOGIT * (y_pred.shape[-1] - 1)
        frames = ops.sum(ops.cast(real, "int64"), axis=1)
        nll = ops.ctc(ops.log_softmax(y_pred), labels, lengths, self.blank, self.zero_infinity, frames)
        return nll / ops.maximum(ops.cast(lengths, "float32"), 1.0)


@_builtin
class SequenceCrossEntropy(Loss):
    """Cross-entropy over every position of logits ``(N, L, V)`` against ids ``(N, L)``, positions
    labelled ``ignore_index`` (-100) left out, averaged over the batch's counted tokens. ``shift``
    predicts position t+1 from t (a causal LM given its own ids as labels: transformers'
    ``GPT2LMHeadModel(labels=...)`` loss)."""

    name = "sequence_cross_entropy"
    task = "sequence"
    logits = True
    aliases = ("seq_cross_entropy", "lm", "causal_lm")

    @classmethod
    def defaults(cls):
        return {"shift": False, "ignore_index": -100, "label_smoothing": 0.0}

    def call(self, ops, y_true, y_pred):
        if self.shift:
            y_pred, y_true = y_pred[:, :-1], y_true[:, 1:]
        valid = y_true != self.ignore_index
        tokens = ops.sparse_cross_entropy(y_pred, ops.where(valid, y_true, 0))
        if self.label_smoothing:
            uniform = -ops.mean(ops.log_softmax(y_pred), axis=-1)
            tokens = tokens * (1.0 - self.label_smoothing) + uniform * self.label_smoothing
        per_sample = ops.sum(ops.where(valid, tokens, 0.0), axis=1)
        # sample i's share of the batch's token mean: the batch mean of these is sum(tokens) / count
        counted = ops.mean(ops.sum(ops.cast(valid, "float32"), axis=1))
        return per_sample / ops.maximum(counted, 1e-12)


@_builtin
class Distillation(Loss):
    """Knowledge distillation (Hinton et al.), as torchdistill's ``KDLoss``:
    ``alpha T² KL(softmax(t/T) ‖ softmax(s/T)) + (1 - alpha) CE(y, s)`` on the student's logits
    ``s``. The target row is ``[label, *teacher_logits]`` (float32); a negative label marks a row
    without one, which learns from the teacher alone (weight 1 on the KL term). Built by
    :func:`llmasos.compress.distill`, which computes the teacher's logits."""

    name = "distillation"
    logits = True
    aliases = ("distill", "kd")

    @classmethod
    def defaults(cls):
        return {"temperature": 4.0, "alpha": 0.9}

    def check(self):
        if not self.temperature > 0:
            raise TrainingError(f"distillation's temperature must be > 0, got {self.temperature} (4.0 is usual)")
        if not 0.0 <= self.alpha <= 1.0:
            raise TrainingError(f"distillation's alpha (the teacher's share) must be in [0, 1], got {self.alpha}")

    def call(self, ops, y_true, y_pred):
        # [label, *teacher_logits] per row; the reshape gives TensorFlow's traced step (whose
        # "values" targets have no fixed rank) the rank it needs
        y_true = ops.reshape(y_true, (-1, int(y_pred.shape[-1]) + 1))
        labels, teacher = y_true[:, 0], y_true[:, 1:]
        t = float(self.temperature)
        log_p_teacher = ops.log_softmax(teacher / t)
        kl = ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - ops.log_softmax(y_pred / t)), axis=-1) * (t * t)
        labelled = labels >= 0
        ce = ops.sparse_cross_entropy(y_pred, ops.where(labelled, ops.cast(labels, "int64"), 0))
        ce_share = ops.cast(labelled, "float32") * (1.0 - self.alpha)   # 0 on rows without a label
        return kl * (1.0 - ce_share) + ce * ce_share


LOSSES: tuple[str, ...] = tuple(_REGISTRY)
"""The built-in losses' names."""


class FunctionLoss(Loss):
    """A user's function ``(ops, y_true, y_pred) -> per-sample or per-element losses``."""

    def __init__(self, name: str, fn: Callable, task: str, logits: bool) -> None:
        self.name, self.fn, self.task, self.logits = name, fn, task, logits  # type: ignore[misc]
        self.params = {}

    def call(self, ops, y_true, y_pred):
        return self.fn(ops, y_true, y_pred)


def register(name: str, *, task: str = "values", logits: bool = False) -> Callable[[Callable], Callable]:
    """Register a loss function ``fn(ops, y_true, y_pred)`` under ``name`` (see the module's docstring).
    ``task`` says what its targets are (one of :data:`TASKS`; "classes" and "binary" give accuracy),
    ``logits=True`` trains on the model's logits (a final softmax/sigmoid left out)."""
    if task not in TASKS:
        raise TrainingError(f"a loss's task is one of {', '.join(TASKS)}, got {task!r}")

    def decorate(fn: Callable) -> Callable:
        key = _key(name)
        held = _REGISTRY.get(key) or _REGISTRY.get(_ALIASES.get(key, ""))
        if held is not None and getattr(held, "fn", None) is not fn:
            raise TrainingError(f"a loss named {name!r} is already registered; choose another name")
        _REGISTRY[key] = FunctionLoss(key, fn, task, logits)
        return fn

    return decorate


def known() -> list[str]:
    """Names of every registered loss (built-in and user), aliases left out."""
    return sorted(_REGISTRY)


def _parse(text: str) -> tuple[str, dict[str, Any]]:
    """``"focal(gamma=1.0)"`` -> ``("focal", {"gamma": 1.0})``; a bare name has no parameters."""
    text = text.strip()
    if not text.endswith(")") or "(" not in text:
        return _key(text), {}
    try:
        call = ast.parse(text, mode="eval").body
        if not isinstance(call, ast.Call) or call.args or not isinstance(call.func, ast.Name):
            raise ValueError
        return _key(call.func.id), {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError):
        raise TrainingError(f"cannot read the loss {text!r}: write a name, or name(parameter=value, ...) "
                            f"as 'focal(gamma=1.0)'") from None


def get(loss: "str | Loss | Callable") -> Loss:
    """The :class:`Loss` for a name, a canonical text (``"focal(gamma=1.0)"``), a Loss, or a function
    (registered under its ``__name__`` on first use)."""
    if isinstance(loss, Loss):
        return loss
    if callable(loss) and not isinstance(loss, str):
        for entry in _REGISTRY.values():
            if getattr(entry, "fn", None) is loss:
                return entry  # type: ignore[return-value]
        register(loss.__name__)(loss)
        return _REGISTRY[_key(loss.__name__)]  # type: ignore[return-value]
    if not isinstance(loss, str):
        raise TrainingError(f"loss= takes a name, a llmasos.losses.Loss or a function (ops, y_true, y_pred), "
                            f"got {type(loss).__name__}")
    name, params = _parse(loss)
    entry = _REGISTRY.get(_ALIASES.get(name, name))
    if entry is None:
        raise TrainingError(f"unknown loss {loss!r}; known: {', '.join(known())} "
                            f"(or register your own with llmasos.losses.register)")
    if isinstance(entry, Loss):
        if params:
            raise TrainingError(f"the loss {entry.name!r} takes no parameters, got {', '.join(params)}")
        return entry
    return entry(**params)


def resolve_loss(final_activation: str, loss: "str | Loss | Callable | None") -> str:
    """The canonical text of a model's loss: ``loss`` resolved for its last activation, else the
    loss that activation implies (softmax: cross-entropy, sigmoid: binary cross-entropy, else MSE)."""
    if loss is None:
        return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}.get(final_activation, "mse")
    return str(get(loss).for_activation(final_activation))


def batch_loss(ops: LossOps, loss: Loss, y_true: Any, y_pred: Any, weights: Any = None) -> Any:
    """The batch's loss: the mean over samples of ``loss``'s values (each sample's own values
    averaged first), each weighed by ``weights`` when given — Keras' ``sum_over_batch_size``,
    ``sum(w_i * l_i) / batch``."""
    values = loss.call(ops, y_true, y_pred)
    rank = len(values.shape)
    if rank == 0:
        raise TrainingError(f"the loss {loss.name!r} returned one number for the batch; "
                            f"return one value per sample (or per element), which llmasos averages")
    if rank > 1:
        values = ops.mean(values, axis=tuple(range(1, rank)))
    return ops.mean(values if weights is None else values * weights)
