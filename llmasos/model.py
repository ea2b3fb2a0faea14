"""``Model``: describe a network once, run it in PyTorch or TensorFlow.

>>> from llmasos import Model
>>> model = Model(input_dim=784, output_dim=10, framework="torch")
>>> model.add_layer("Dense", 128, activation="relu").add_layer("Dense", 10, activation="softmax")
Model(framework='torch', layers=2, parameters=101,770, built=False)

Then ``model.train(Dataset(...), Optimizer("Adam", lr=1e-3), epochs=10)``, ``model.evaluate(ds)``,
``model.predict(x)``, ``model.save("model.h5")`` and ``Model.load("model.h5", framework="tf")``.
The framework is only imported when the model is first built (on train, predict, ...).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np

from . import devices, distributed, families, io
from .adapters import ENV_VAR, get_backend, installed_frameworks, resolve_framework
from .adapters.base import CompiledModel, StepOptions, Trainer, Weights
from .callbacks import Callback, Checkpoint
from .data import Dataset, named_classes
from .errors import DataError, SpecError, TrainingError
from .feeding import ClassWeights, as_datasets, feed
from .layout import conform
from .metrics import make_metrics
from .optim import Optimizer
from .spec import ModelSpec
from .losses import resolve_loss
from .training import History, evaluate, fit


class Text(str):
    """A string that shows itself plainly in a REPL (for ``summary()``)."""

    def __repr__(self) -> str:
        return str(self)


class Model:
    """A network described in the neutral spec and compiled, on first use, in one framework.

    Sequential models take ``input_dim`` (features) or ``input_shape`` (e.g. ``(1, 28, 28)``,
    channels first); graphs with several inputs take ``inputs={"name": shape, ...}`` and name
    each layer's ``inputs=``. ``output_dim`` declares the classes (or targets) and is checked
    against the last layer.

    >>> model = Model(input_dim=64, output_dim=10, framework="torch")
    >>> model.add_layer("Dense", 32, activation="relu").add_layer("Dense", 10, activation="softmax")
    Model(framework='torch', layers=2, parameters=2,410, built=False)

    Training, saving and loading in the other framework (notebooks/01 and 02 run these)::

        history = model.train(Dataset("train.csv", mode="train"), Optimizer("Adam", lr=1e-3), epochs=10)
        model.save("model.h5")
        same = Model.load("model.h5", framework="tf")
    """

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None, *,
                 input_shape: Sequence[int | None] | None = None,
                 inputs: dict[str, Any] | None = None, framework: str | None = None,
                 name: str = "model", spec: ModelSpec | None = None, device: str = "cpu") -> None:
        self.name = name
        self.framework = resolve_framework(framework)
        # where the weights live and steps run ("cpu", "cuda", "cuda:1", "mps", "auto"): plain data, never saved
        self.device = devices.parse(device)
        self.output_dim = output_dim
        given = [x is not None for x in (input_dim, input_shape, inputs, spec)]
        if sum(given) != 1:
            raise SpecError("give exactly one of input_dim (features), input_shape (e.g. (1, 28, 28)) or inputs "
                            "(a dict of named input shapes)")
        if spec is not None:
            self.spec = spec
        elif inputs is not None:
            self.spec = ModelSpec()
            for input_name, value in inputs.items():
                shape, dtype = (value["shape"], value.get("dtype", "float32")) if isinstance(value, dict) else (value, "float32")
                self.spec.add_input(input_name, shape, dtype)
        else:
            self.spec = ModelSpec.sequential(input_shape if input_shape is not None else (input_dim,))
        self._compiled: CompiledModel | None = None
        self._trainer: Trainer | None = None
        self._trainer_key: tuple | None = None
        self._loss: str | None = None
        self._optimizer: Optimizer | None = None
        self._epoch = 0
        self._step = 0
        self._seed: int | None = None
        self._pending_state: dict | None = None
        self.history = History()
        self.metadata: dict = {}

    # -- describing ---------------------------------------------------------------------------

    def add_layer(self, kind: str, main: Any = None, *, name: str | None = None,
                  inputs: str | list[str] | None = None, **options: Any) -> "Model":
        """Append a layer: ``add_layer("Conv2D", 16, kernel_size=3, stride=2, padding="same")``.

        The first positional argument is the main size (units, filters, pool size, rate...).
        Returns the model, so calls chain.
        """
        if self._compiled is not None:
            raise SpecError("the model is already built (trained or used); add layers before the first "
                            "train/predict, or start a new Model")
        self.spec.add(kind, main, name=name, inputs=inputs, **options)
        return self

    def set_outputs(self, names: str | list[str]) -> "Model":
        self.spec.set_outputs(names)
        return self

    @property
    def classes(self) -> int | None:
        """Number of classes for classification (the output size), else None."""
        shapes = self.spec.shapes()
        last = shapes[self.spec.outputs[0]] if self.spec.outputs else None
        return last[-1] if last else None

    def summary(self) -> Text:
        """Layers, output shapes and parameter counts; needs no framework."""
        return Text(self.spec.summary())

    def __repr__(self) -> str:
        return (f"Model(framework={self.framework!r}, layers={len(self.spec.layers)}, "
                f"parameters={self.spec.parameter_count():,}, built={self._compiled is not None})")

    # -- building -----------------------------------------------------------------------------

    def build(self, seed: int | None = None) -> "Model":
        """Compile the spec in the model's framework (done on first use anyway)."""
        if self._compiled is None:
            self.spec.validate()
            self._check_output_dim()
            self._compiled = get_backend(self.framework).build(self.spec, seed, self.device)
            if self.spec.frozen():
                self._compiled.set_trainable(set(self.spec.frozen()), False)
        return self

    def _check_output_dim(self) -> None:
        if self.output_dim is None or len(self.spec.outputs) != 1:
            return
        shape = self.spec.shapes()[self.spec.outputs[0]]
        if shape[-1] != self.output_dim:
            raise SpecError(f"output_dim={self.output_dim} but the last layer {self.spec.outputs[0]!r} outputs "
                            f"{shape[-1]} values per sample (shape {shape}); make them agree")

    @property
    def compiled(self) -> CompiledModel:
        return self.build()._compiled

    @property
    def backend_model(self) -> Any:
        """The native ``torch.nn.Module`` or ``keras.Model``, for users who want it."""
        return self.compiled.native

    @property
    def built(self) -> bool:
        return self._compiled is not None

    def get_weights(self) -> Weights:
        """Weights in the neutral layout: ``{layer: {weight: ndarray}}``."""
        return self.compiled.get_weights()

    def set_weights(self, weights: Weights) -> None:
        self.compiled.set_weights(weights)

    # -- freezing -----------------------------------------------------------------------------

    @property
    def frozen(self) -> set[str]:
        """The layers training leaves alone (their weights and BatchNorm statistics)."""
        return set(self.spec.frozen())

    def freeze(self, layers: str | Iterable[str] = "backbone") -> "Model":
        """Stop training ``layers``: a layer name, names, or ``"backbone"`` (every layer but the
        head of a zoo model). Frozen layers are part of the spec, so ``save``/``load``, ``.to()``
        and exported files keep them; a frozen BatchNorm keeps its statistics (inference mode).
        An unknown name is a :class:`SpecError` listing the layers. Returns the model::

            net = zoo.load("resnet18", num_classes=10).freeze("backbone")
            net.train(...)                  # only "fc" learns
            net.unfreeze()                  # then fine-tune everything

        The optimizer keeps its state and step count for the layers that stay trainable; a layer
        that starts training again starts with fresh optimizer slots.
        """
        self._set_trainable(self._resolve_layers(layers, "freeze"), False)
        return self

    def unfreeze(self, layers: str | Iterable[str] | None = None) -> "Model":
        """Train ``layers`` again: names, ``"backbone"``, or None for every layer (layers holding
        computed weights, such as sinusoidal positions, stay frozen). Returns the model."""
        names = self._resolve_layers(layers, "unfreeze")
        fixed = sorted(names & self._fixed_layers()) if layers is not None and layers != "backbone" else []
        if fixed:
            raise SpecError(f"{', '.join(map(repr, fixed))} hold(s) computed weights and never train(s)")
        self._set_trainable(names - self._fixed_layers(), True)
        return self

    def _resolve_layers(self, layers: str | Iterable[str] | None, verb: str) -> set[str]:
        everything = {layer.name for layer in self.spec.layers}
        if layers is None:
            return everything
        if layers != "backbone":
            return {layers} if isinstance(layers, str) else set(layers)
        head = self._head_layers()
        if not head:
            raise SpecError(f"{verb}('backbone') needs a model that names its head (a zoo model does); name the "
                            f"layers instead, from: {', '.join(layer.name for layer in self.spec.layers)}")
        return everything - head

    def _head_layers(self) -> set[str]:
        """The layers ``"backbone"`` leaves out: the head a zoo model names in its metadata."""
        return set(self.metadata.get("head") or ())

    def _fixed_layers(self) -> set[str]:
        """Layers whose weights are computed, never trained (subclasses say which)."""
        return set()

    def _set_trainable(self, names: set[str], trainable: bool) -> None:
        self.spec.set_trainable(names, trainable)
        if self._compiled is not None:
            self._compiled.set_trainable(names, trainable)
        if self._trainer is not None:  # it holds the old parameter list: remake it, carrying its state
            self._pending_state = self._trainer.get_state()
            self._trainer = None

    def prune(self, amount: float = 0.5, *, structured: bool = False, criterion: str = "l1") -> "float | Model":
        """Magnitude pruning: zero the ``amount`` smallest weights of every Dense and Conv kernel;
        returns the share of zeros in those kernels. Fine-tune, prune again, then export (see
        :mod:`llmasos.export.prune`).

        ``structured=True`` removes whole Dense units and conv channels instead (the ``amount``
        least important of each group by their weights' ``criterion`` norm, "l1" or "l2"), with
        every layer that depends on them, and returns a new, smaller Model; this one is unchanged
        (:mod:`llmasos.compress.prune`)::

            slim = model.prune(0.5, structured=True)
        """
        if structured:
            from .compress.prune import Plan

            plan = Plan(self.spec, self.get_weights(), amount, criterion)
            smaller = Model(spec=plan.spec, framework=self.framework, output_dim=self.output_dim, name=self.name)
            smaller.device, smaller.metadata = self.device, dict(self.metadata)
            smaller.set_weights(plan.weights())
            return smaller
        from .export.prune import prune_weights

        weights, sparsity = prune_weights(self.spec, self.get_weights(), amount)
        self.set_weights(weights)
        return sparsity

    def to(self, target: str) -> "Model":
        """``to("cuda")`` (a device: "cpu", "cuda", "cuda:1", "mps", "auto") moves this model's weights
        and optimizer state there and returns it; ``to("tf")`` (a framework) returns the same model,
        with the same weights, in another framework."""
        if devices.is_device(target):
            self.device = devices.parse(target)
            if self._compiled is not None:
                state = self._trainer.get_state() if self._trainer is not None else self._pending_state
                self._compiled.to(self.device)
                self._trainer, self._pending_state = None, state   # a trainer holds the old device's tensors
            return self
        other = self._like(target)
        if self._compiled is not None:
            other.set_weights(self.get_weights())
        other.metadata = dict(self.metadata)
        return other

    def _like(self, framework: str) -> "Model":
        """An unbuilt model like this one in ``framework`` (subclasses keep what they add)."""
        return Model(spec=ModelSpec.from_dict(self.spec.to_dict()), framework=framework, output_dim=self.output_dim,
                     name=self.name)

    # -- running ------------------------------------------------------------------------------

    def shape_input(self, x: np.ndarray | list[np.ndarray] | dict) -> list[np.ndarray]:
        """Inputs as a list in spec order. Flat 2-D rows are reshaped to the input's shape; any other
        shape that is not the input's (channels-last images, say) is a :class:`DataError` naming
        the layout expected (see :mod:`llmasos.layout`)."""
        specs = self.spec.inputs
        if isinstance(x, dict):
            missing = [i.name for i in specs if i.name not in x]
            if missing:
                raise DataError(f"missing input(s) {', '.join(missing)}; the model takes {[i.name for i in specs]}")
            x = [x[i.name] for i in specs]
        elif not isinstance(x, (list, tuple)):
            x = [x]
        if len(x) != len(specs):
            raise DataError(f"the model takes {len(specs)} input(s) ({', '.join(i.name for i in specs)}), got {len(x)}")
        out = []
        for value, spec_input in zip(x, specs):
            value = np.asarray(value)
            target = conform(value.shape, spec_input.shape, f"input {spec_input.name!r}")
            if target is not None:
                value = value.reshape(target)
            dtype = np.int64 if spec_input.dtype == "int64" else np.float32
            if spec_input.dtype == "int64" and not np.issubdtype(value.dtype, np.integer):
                if self.spec.is_mask(spec_input.name):
                    raise DataError(f"input {spec_input.name!r} takes an int64 mask (0/1), as tokenizers return "
                                    f"it; got {value.dtype}: pass {spec_input.name}.astype('int64')")
                raise DataError(f"input {spec_input.name!r} takes integer ids, got {value.dtype}")
            out.append(np.ascontiguousarray(value, dtype=dtype))
        return out

    def predict(self, x: Any, batch_size: int = 1024) -> np.ndarray | list[np.ndarray]:
        """NumPy in, NumPy out, in inference mode. ``x`` is an array (channels first), a list or
        dict of arrays for several inputs, or a Dataset. Several outputs give a list."""
        if hasattr(x, "batches"):
            parts = [self.predict(xb, batch_size) for xb, _ in x.batches(batch_size)]
            if not parts:
                raise DataError("cannot predict on an empty dataset")
            if isinstance(parts[0], list):
                return [np.concatenate(p) for p in zip(*parts)]
            return np.concatenate(parts)
        inputs = self.shape_input(x)
        n = len(inputs[0])
        chunks = [self.compiled.predict([i[s:s + batch_size] for i in inputs]) for s in range(0, max(n, 1), batch_size)]
        outs = [np.concatenate(parts) for parts in zip(*chunks)]
        return outs[0] if len(outs) == 1 else outs

    def _get_trainer(self, optimizer: Optimizer, loss: str, seed: int | None,
                     options: StepOptions = StepOptions()) -> Trainer:
        key = (id(optimizer), loss, options)
        if self._trainer is None or self._trainer_key != key:
            if self._trainer is not None and self._trainer_key[:2] == key[:2] and self._pending_state is None:
                self._pending_state = self._trainer.get_state()   # new step options, same optimizer: keep its state
            self._trainer = self.compiled.trainer(optimizer, loss, seed, options)
            self._trainer_key = key
            if self._pending_state is not None:
                self._trainer.set_state(self._pending_state)
                self._pending_state = None
        return self._trainer

    def train(self, x: Any, y: Any = None, epochs: int = 10, batch_size: int = 32,
              validation: "Dataset | tuple | None" = None, *, optimizer: Optimizer | None = None,
              validation_split: float | None = None, class_weight: dict | None = None, sample_weight: Any = None,
              metrics: Sequence | None = None, seed: int | None = None, loss: str | None = None,
              callbacks: Iterable[Callback] = (), progress: bool | None = None,
              checkpoint: str | None = None, checkpoint_every: int = 1, resume: str | None = None,
              nproc: int | None = None, precision: str = "32", clip_grad_norm: float | None = None,
              clip_grad_value: float | None = None, accumulate: int = 1, adversarial: Any = None,
              energy: bool = False) -> History:
        """Train ``epochs`` more epochs and return the :class:`History` of every epoch so far (also
        kept as ``model.history``).

        ``precision="bf16-mixed"`` or ``"16-mixed"`` (autocast, with loss scaling for float16; weights
        stay float32), ``clip_grad_norm``/``clip_grad_value`` and ``accumulate=N`` (N micro-batches of
        ``batch_size`` per optimizer step: the step of one batch of N × batch_size) mean the same in
        both frameworks (:class:`llmasos.adapters.base.StepOptions`); the learning-rate schedule
        counts optimizer steps.

        Two forms: ``train(dataset, optimizer, ...)`` (a :class:`Dataset` carries its labels, the
        second argument is the Optimizer) and Keras' ``train(X, y, ...)`` (arrays or a DataFrame and
        their labels; the optimizer is then ``optimizer=``); anything that could be either is
        refused, naming the form expected. With arrays, ``validation_split=0.1`` holds out the last
        tenth of the rows (before shuffling, as Keras); ``validation=`` takes a Dataset or ``(X, y)``.
        ``class_weight={0: 1.0, 1: 3.0}`` and ``sample_weight`` (one weight per row, or a Dataset's
        column name) weigh each sample's loss with Keras' meanings (:mod:`llmasos.feeding`).

        ``metrics=["accuracy", "f1", "auc", ...]`` (names or :class:`llmasos.metrics.Metric`
        objects; default: accuracy for classification) are computed in NumPy from every step's
        outputs, the same in both frameworks, and logged with the loss in the History, the progress
        bar and the callbacks' logs (``val_`` for the validation's); see :mod:`llmasos.metrics`.
        ``callbacks`` get Keras' hooks (:mod:`llmasos.callbacks`).

        The loss follows the last activation (softmax: cross-entropy on logits, sigmoid: binary
        cross-entropy, else MSE) unless ``loss=`` says otherwise. ``seed`` makes a run repeatable
        in its framework. A ``mode="train"`` dataset is shuffled every epoch.

        Calling train() again continues, as Keras' ``fit`` does: epoch numbers go on (4, 5, 6
        after a first call of 3 epochs), and the optimizer keeps its state and step count when
        ``optimizer`` is omitted or has the same settings (and the loss is the same); another
        optimizer starts afresh. The learning-rate schedule runs on that step count, its horizon
        (a cosine schedule's end) being the last step of this call; a warmup is not repeated.

        ``checkpoint="ckpt.h5"`` saves every ``checkpoint_every`` epochs; ``resume="ckpt.h5"``
        continues such a run up to a total of ``epochs`` (the checkpoint's epochs count), with the
        same result as an uninterrupted run, and returns at once when the checkpoint has them all.

        ``nproc=N`` trains data-parallel on N local processes (:mod:`llmasos.launch`) and takes the
        result back; ``batch_size`` stays the global batch, so N changes the speed, not the result.
        Under torchrun (``WORLD_SIZE``) or ``TF_CONFIG`` every process calls train() and trains as
        its rank (:mod:`llmasos.distributed`).

        ``adversarial=robust.PGD(eps=0.1, alpha=0.01, steps=10)`` (or ``robust.FGSM(...)``) trains
        on each batch's adversarial examples, made against the weights of that step (Madry et al.;
        :mod:`llmasos.robust.training`); validation stays on the clean data. Pass it again when
        resuming. It goes with ``nproc``: each rank attacks its own rows of the global batch.

        ``energy=True`` leaves the run's joules, seconds and their ``source`` ("rapl", or
        "estimate" with a warning where no counter is readable) in ``history.energy``
        (:mod:`llmasos.energy`).
        """
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise TrainingError(f"epochs must be a positive int, got {epochs!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise TrainingError(f"batch_size must be a positive int, got {batch_size!r}")
        inputs = as_datasets(x, y, optimizer=optimizer, validation=validation, validation_split=validation_split,
                             sample_weight=sample_weight)
        dataset, validation, optimizer = inputs.train, inputs.validation, inputs.optimizer
        if len(dataset) == 0:
            raise DataError("the training dataset is empty")
        if nproc is not None and (not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1):
            raise TrainingError(f"nproc must be a positive int (processes), got {nproc!r}")
        if nproc is not None and nproc > 1:
            from .launch import launch

            if energy:
                raise TrainingError("energy=True measures this process; train without nproc= to measure it")
            if adversarial is not None:   # the workers rebuild the attack from plain data (never pickled)
                from .robust.training import adversarial_attack, attack_config

                adversarial = attack_config(adversarial_attack(adversarial, self))

            if class_weight is not None or inputs.weights is not None or inputs.validation_weights is not None:
                raise TrainingError("class_weight and sample_weight do not go with nproc= yet; train in one process")
            if metrics is not None and not all(isinstance(m, str) for m in metrics):
                raise TrainingError("with nproc= metrics are given by name (the workers make their own)")
            extra = ({} if metrics is None else {"metrics": list(metrics)}) | \
                ({} if adversarial is None else {"adversarial": adversarial})
            return launch(self, nproc, dataset=dataset, validation=validation, optimizer=optimizer, callbacks=callbacks,
                          epochs=epochs, batch_size=batch_size, seed=seed, loss=loss, progress=progress,
                          checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, **extra)
        if resume is not None:
            self._resume_from(resume)
            optimizer = optimizer or self._optimizer
            loss = loss or self._loss
            seed = self._seed if seed is None else seed
        optimizer = optimizer or self._optimizer or Optimizer("Adam", lr=0.001)
        if not isinstance(optimizer, Optimizer):
            raise TrainingError(f"optimizer must be an llmasos Optimizer, got {type(optimizer).__name__}")
        dataset = self._numbered(dataset, fix=True)
        validation = None if validation is None else self._numbered(validation)
        loss = resolve_loss(self.spec.final_activation(), loss)
        optimizer = self._continue_or_restart(optimizer, loss)
        self._loss, self._optimizer, self._seed = loss, optimizer, seed
        distributed.join(self.framework)   # first: TensorFlow sets up collectives before its first op
        self.build(seed)
        options = StepOptions(precision, clip_grad_norm, clip_grad_value, accumulate)
        trainer = distributed.shard_trainer(self, self._get_trainer(optimizer, self._loss, seed, options))
        if adversarial is not None:
            from .robust.training import AdversarialTrainer, adversarial_attack

            trainer = AdversarialTrainer(trainer, self, adversarial_attack(adversarial, self))
        progress = progress if distributed.is_main() else False
        callbacks = list(callbacks)
        if checkpoint is not None:
            callbacks.append(Checkpoint(checkpoint, every=checkpoint_every))
        last_epoch = epochs if resume is not None else self._epoch + epochs
        if self._epoch >= last_epoch:   # a resumed run that its checkpoint already finished
            return self.history
        weights = None if class_weight is None else ClassWeights(class_weight, self.classes,
                                                                     getattr(dataset, "classes", None))
        if weights is not None:
            weights.check(dataset)
        meter = None
        if energy:
            from . import energy as energy_meters

            meter = energy_meters.measure(powercap=energy_meters.POWERCAP).start()
        try:
            history = fit(trainer, feed(dataset, inputs.weights, weights), owner=self, prepare=self.shape_input,
                          classes=self.classes, loss=self._loss, optimizer=optimizer, epochs=last_epoch,
                          batch_size=batch_size,
                          validation=None if validation is None else feed(validation, inputs.validation_weights),
                          seed=seed, metrics=metrics, callbacks=callbacks, progress=progress, history=self.history,
                          start_epoch=self._epoch, start_step=self._step, after_epoch=self._after_epoch)
        finally:
            if meter is not None:   # stopped even when training fails: its polling thread ends
                self.history.energy = meter.stop()
        return history

    def _numbered(self, dataset: "Dataset", fix: bool = False) -> "Dataset":
        """``dataset`` with its text labels numbered by the model's labels (``metadata["labels"]``),
        so class ids mean the same in every dataset. A model that names no classes yet takes the
        first training dataset's (``fix``), padded with ``LABEL_i`` to its outputs; until then a
        dataset keeps its own numbering."""
        classes = getattr(dataset, "classes", None)
        if classes is None:
            return dataset
        known = named_classes(self.metadata.get("labels"))
        if known is None:
            if not fix:
                return dataset
            outputs = self.classes or len(classes)
            if len(classes) > max(outputs, 2):
                raise DataError(f"the training labels name {len(classes)} classes ({', '.join(classes)}) but the "
                                f"model has {outputs} outputs")
            known = [*classes, *(f"LABEL_{i}" for i in range(len(classes), outputs))]
            self.metadata["labels"] = known
        return dataset.with_classes(known)

    def _continue_or_restart(self, optimizer: Optimizer, loss: str) -> Optimizer:
        """The optimizer in use, with its state and step count, when ``optimizer`` has its settings
        and the loss is unchanged; else ``optimizer``, from step 0 with a fresh state."""
        same = self._optimizer is not None and optimizer.get_config() == self._optimizer.get_config()
        if same and loss == self._loss:
            return self._optimizer
        self._step, self._pending_state = 0, None
        return optimizer

    def _after_epoch(self, epoch: int, step: int) -> None:
        self._epoch, self._step = epoch, step

    def _resume_from(self, path: str) -> None:
        model_file = io.read(path)
        if model_file.spec != self.spec:
            raise TrainingError(f"cannot resume from {path!r}: its model spec differs from this model's")
        if not model_file.training:
            raise TrainingError(f"cannot resume from {path!r}: it holds no training state (save during training)")
        self._restore(model_file)

    def _restore(self, model_file: io.ModelFile) -> None:
        self.build()
        self.set_weights(model_file.weights)
        training = model_file.training or {}
        if training:
            self._optimizer = Optimizer.from_config(training["optimizer"]) if training.get("optimizer") else None
            self._loss = training.get("loss")
            self._epoch = int(training.get("epoch", 0))
            self._step = int(training.get("step", 0))
            self._seed = training.get("seed")
            self.history = History(training.get("history") or [])
            self._pending_state = training.get("state")
            self._trainer = None

    def evaluate(self, x: Any, y: Any = None, batch_size: int = 256, *, loss: str | None = None,
                 metrics: Sequence | None = None, sample_weight: Any = None,
                 callbacks: Iterable[Callback] = ()) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` on a labelled Dataset, or on arrays ``evaluate(X, y)``,
        read in order. ``metrics=["accuracy", "f1"]`` chooses what besides the loss (default:
        accuracy for classification; see :mod:`llmasos.metrics`); ``sample_weight`` weighs the loss
        (one weight per row, or a Dataset's column name); ``callbacks`` get the test hooks."""
        if hasattr(x, "batches"):
            if y is not None:
                raise TrainingError(f"evaluate(dataset): a Dataset carries its own labels, got a second argument "
                                    f"({type(y).__name__}); for arrays call evaluate(X, y), and give batch_size= by name")
            dataset = x
        else:
            if y is None:
                raise TrainingError("evaluate(X, y) needs the labels y beside the arrays X; or pass a Dataset")
            dataset = Dataset(x, y, mode="test")
        dataset = self._numbered(dataset)
        loss = resolve_loss(self.spec.final_activation(), loss or self._loss)
        trainer = self._trainer if self._trainer is not None and self._loss == loss else \
            self.compiled.trainer(self._optimizer or Optimizer("SGD", lr=0.1), loss)
        return evaluate(trainer, feed(dataset, sample_weight), batch_size, loss=loss, classes=self.classes,
                        prepare=self.shape_input, metrics=make_metrics(metrics, loss), callbacks=callbacks, owner=self)

    # -- saving -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, include_optimizer: bool = True) -> str:
        """Write the framework-neutral .h5 (spec + weights + training state), atomically. In a
        data-parallel run rank 0 writes and every rank waits for it (call it on every rank)."""
        with distributed.writer() as writes:
            if writes:
                self._write(path, include_optimizer)
        return os.fspath(path)

    def _write(self, path: str | os.PathLike, include_optimizer: bool) -> None:
        training = None
        if include_optimizer and self._optimizer is not None:
            state = self._trainer.get_state() if self._trainer is not None else self._pending_state
            training = {"optimizer": self._optimizer.get_config(), "loss": self._loss, "epoch": self._epoch,
                        "step": self._step, "seed": self._seed, "history": self.history.epochs, "state": state}
        backend = get_backend(self.framework)
        io.write(path, io.ModelFile(spec=self.spec, weights=self.get_weights(), framework=self.framework,
                                    framework_version=backend.version(),
                                    metadata={"name": self.name, "output_dim": self.output_dim, **self.metadata},
                                    training=training))

    @classmethod
    def load(cls, path: str | os.PathLike, framework: str | None = None, *, allow_nonfinite: bool = False,
             max_elements: int | None = io.MAX_ELEMENTS, device: str = "cpu") -> "Model":
        """Load an .h5 written by either framework into ``framework``, on ``device`` (the file
        holds float32 weights and no device).

        Without ``framework``: ``$LLMASOS_FRAMEWORK``, else the file's own framework when
        installed, else the first one installed.

        The file is checked before anything is built (:func:`llmasos.io.read`): a spec implying
        more than ``max_elements`` parameters (or values in one layer's output), stored weights
        whose shapes are not the spec's, and weights holding NaN or infinity are a
        :class:`~llmasos.errors.ModelFileError`; ``max_elements=None`` and
        ``allow_nonfinite=True`` lift the first and the last.
        """
        model_file = io.read(path, allow_nonfinite=allow_nonfinite, max_elements=max_elements)
        metadata = dict(model_file.metadata)
        if framework is None and not os.environ.get(ENV_VAR) and model_file.framework in installed_frameworks():
            framework = model_file.framework
        output_dim, name = metadata.pop("output_dim", None), metadata.pop("name", "model")
        # a family's model comes back as one (tokenizer, generate, ...); only that family is imported
        family_name = metadata.get("family")
        if not family_name and metadata.get("zoo") in families.known():
            family_name = metadata["zoo"]  # files written before "family" existed name it only as "zoo"
        family = families.get(family_name) if family_name else cls
        model = family.from_saved(model_file.spec, framework=framework, name=name, output_dim=output_dim,
                                  metadata=metadata)
        model.metadata = metadata
        model.device = devices.parse(device)
        model._restore(model_file)
        model._loaded()
        return model

    @classmethod
    def from_saved(cls, spec: ModelSpec, *, framework: str | None, name: str, output_dim: int | None,
                   metadata: dict) -> "Model":
        """The unbuilt model :meth:`load` puts a file's weights into. A family (a subclass registered
        in :mod:`llmasos.families`, whose name :meth:`save` writes as metadata ``"family"``)
        overrides it to rebuild what it needs from ``metadata`` (a config, a tokenizer)."""
        return cls(spec=spec, framework=framework, output_dim=output_dim, name=name)

    def _loaded(self) -> None:
        """Called by :meth:`load` once the weights are in (subclasses restore what they add)."""
