"""Config files: one YAML file describes the framework, model, data, optimizer and training.

The format (every key but ``model`` and ``data.train`` is optional; unknown keys are errors)::

    framework: torch            # torch | tf (aliases pytorch, tensorflow); else $LLMASOS_FRAMEWORK,
                                # else the first one installed; `llmasos train --framework` overrides
    model:
      input_shape: [64]         # or input_dim: 64; images channels first, e.g. [1, 28, 28]
      output_dim: 10            # classes (or targets); checked against the last layer
      name: model               # optional
      layers:                   # size = the layer's main size (units, filters, pool size, rate);
                                # every other key is an option of that layer kind
        - {kind: Dense, size: 64, activation: relu}
        - {kind: Dense, size: 10, activation: softmax}
    data:
      train: train.csv          # paths are relative to the config file
      test: test.csv            # optional: validation each epoch and the final evaluation
      target: label             # the label column; null for none
      features: null            # optional list of feature columns (default: all but the label)
      shape: null               # optional reshape of feature rows, e.g. [1, 8, 8]
      chunk_size: null          # optional: stream the files in chunks of this many rows
      dtype: float32            # float32 | int64 (token ids for an Embedding first layer)
    optimizer: {name: Adam, lr: 0.001}   # name SGD | Adam | AdamW | RMSprop, plus any option of
                                         # llmasos.Optimizer (momentum, weight_decay, schedule, ...)
    training:
      epochs: 10
      batch_size: 32
      seed: 0                   # null for a different run each time
      loss: null                # null: chosen from the last activation; cross_entropy, mse, ...
      early_stopping: null      # a patience (e.g. 3) or {patience, monitor, min_delta, restore_best}
      checkpoint_every: null    # save a resumable checkpoint every N epochs
      checkpoint: null          # where (may hold {epoch}); default: <output>.ckpt.h5
      nproc: 1                  # data-parallel local processes (batch_size stays the global batch);
                                # ignored under torchrun/Kubeflow, whose launcher decides
    output: model.h5            # where `llmasos train` saves the model, relative to the config file

>>> config = Config.from_dict({"model": {"input_dim": 4, "output_dim": 3,
...                                      "layers": [{"kind": "Dense", "size": 3, "activation": "softmax"}]},
...                            "data": {"train": "train.csv"}}, check_files=False)
>>> config.training.epochs, config.optimizer().name
(10, 'Adam')

Every mistake raises :class:`~llmasos.errors.ConfigError` naming the file, the key path
(``optimizer.lr``, ``model.layers[2]``), the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .adapters import canonical_framework, resolve_framework
from .errors import ConfigError, SpecError, TrainingError
from .optim import Optimizer
from .spec import ModelSpec

if TYPE_CHECKING:
    from .data import Dataset
    from .model import Model
    from .callbacks import Callback

# Strict ints: YAML gives real ints, and a lax int would also take `true` or 1.5-looking strings.
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NaturalInt = Annotated[int, Field(strict=True, ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayerConfig(BaseModel):
    """One layer: ``kind``, its main ``size`` and any options of that kind (checked by the spec)."""

    model_config = ConfigDict(extra="allow")

    kind: str
    size: Any = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(_Section):
    input_shape: list[PositiveInt] | None = Field(default=None, min_length=1)
    input_dim: PositiveInt | None = None
    output_dim: PositiveInt | None = None
    name: str = "model"
    layers: list[LayerConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_input(self) -> "ModelConfig":
        if (self.input_shape is None) == (self.input_dim is None):
            raise ValueError("give exactly one of input_shape (e.g. [1, 28, 28]) or input_dim (e.g. 64)")
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape) if self.input_shape is not None else (self.input_dim,)


class DataConfig(_Section):
    train: str
    test: str | None = None
    target: str | None = "label"
    features: list[str] | None = None
    shape: list[PositiveInt] | None = Field(default=None, min_length=1)
    chunk_size: PositiveInt | None = None
    dtype: Literal["float32", "int64"] = "float32"


class OptimizerConfig(BaseModel):
    """``name`` and ``lr`` plus any option :class:`llmasos.Optimizer` takes, checked by it."""

    model_config = ConfigDict(extra="allow")

    name: str = "Adam"
    lr: float = Field(default=0.001, gt=0, allow_inf_nan=False)

    def options(self) -> dict[str, Any]:
        return {"name": self.name, "lr": self.lr, **(self.model_extra or {})}


class EarlyStoppingConfig(_Section):
    patience: NaturalInt = 3
    monitor: str = "val_loss"
    min_delta: float = Field(default=0.0, ge=0)
    restore_best: bool = True


class TrainingConfig(_Section):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    seed: NaturalInt | None = 0
    loss: str | None = None
    metrics: list[str] | None = None      # llmasos.metrics names, e.g. [accuracy, f1, auc]
    early_stopping: EarlyStoppingConfig | None = None
    checkpoint_every: PositiveInt | None = None
    checkpoint: str | None = None
    nproc: PositiveInt = 1

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _patience_shorthand(cls, value: Any) -> Any:
        # `early_stopping: 3` is short for `early_stopping: {patience: 3}`.
        return {"patience": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str | None) -> str | None:
        from .training import resolve_loss

        if value is not None:
            resolve_loss("linear", value)   # raises TrainingError (a ValueError) naming the known losses
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str] | None) -> list[str] | None:
        from .metrics import get

        for name in value or ():
            get(name)                       # raises TrainingError (a ValueError) naming the known metrics
        return value


class Config(_Section):
    """A validated config; paths inside resolve against the config file's folder."""

    framework: str | None = None
    model: ModelConfig
    data: DataConfig
    # "optimizer" in the file; the attribute has another name so that optimizer() can build one.
    optimizer_settings: OptimizerConfig = Field(default_factory=OptimizerConfig, alias="optimizer")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: str = "model.h5"

    _base: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default="config")
    MODEL_KEY: ClassVar[str] = "model"      # the model section's name in the file (a distill config's: student)

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, value: str | None) -> str | None:
        return None if value is None else canonical_framework(value)

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | os.PathLike | None = None, source: str = "config",
                  check_files: bool = True) -> "Config":
        """Validate ``data`` (a parsed YAML mapping); relative paths resolve against ``base_dir``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a config must be a mapping of keys (framework, {cls.MODEL_KEY}, data, ...), "
                              f"got {type(data).__name__}")
        try:
            config = cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(_describe(err, source, cls)) from None
        config._base = Path(base_dir) if base_dir is not None else Path.cwd()
        config._source = source
        config._check_model()
        config._check_optimizer()
        config._check_training()
        if check_files:
            config._check_files()
        return config

    # -- checks that need more than one key ------------------------------------------------------

    def _fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._source}: {key}: {message}")

    def _check_model(self) -> None:
        spec = ModelSpec.sequential(self.model.shape, dtype=self.data.dtype)
        for index, layer in enumerate(self.model.layers):
            try:
                spec.add(layer.kind, layer.size, **layer.options)
            except SpecError as err:
                raise self._fail(f"{self.MODEL_KEY}.layers[{index}] (kind: {layer.kind})", str(err)) from None
        try:
            spec.validate()
        except SpecError as err:
            raise self._fail(self.MODEL_KEY, str(err)) from None
        output = spec.shapes()[spec.outputs[0]]
        if self.model.output_dim is not None and output[-1] != self.model.output_dim:
            raise self._fail(f"{self.MODEL_KEY}.output_dim", f"{self.model.output_dim}, but the last layer outputs {output[-1]} "
                                                 f"values per sample (shape {output}); make them agree")

    def _check_optimizer(self) -> None:
        options = self.optimizer_settings.options()
        try:
            Optimizer(**options)
        except TrainingError as err:
            key = _key_named_in(str(err), options)
            raise self._fail("optimizer" if key is None else f"optimizer.{key}", str(err)) from None

    def _check_training(self) -> None:
        stopping = self.training.early_stopping
        if stopping is not None and stopping.monitor.startswith("val_") and self.data.test is None:
            raise self._fail("training.early_stopping.monitor", f"{stopping.monitor!r} needs validation data: "
                                                                f"set data.test, or monitor 'loss'")

    def _check_files(self) -> None:
        for key in ("train", "test"):
            value = getattr(self.data, key)
            if value is not None and not self.path(value).is_file():
                raise self._fail(f"data.{key}", f"no such file: {self.path(value)}")

    # -- building what the config describes ------------------------------------------------------

    def path(self, value: str | os.PathLike) -> Path:
        """``value`` resolved against the config file's folder (absolute paths stay as they are)."""
        return self._base / Path(value).expanduser()

    @property
    def output_path(self) -> Path:
        return self.path(self.output)

    @property
    def checkpoint_path(self) -> Path:
        if self.training.checkpoint is not None:
            return self.path(self.training.checkpoint)
        return self.output_path.with_suffix(".ckpt.h5")

    def framework_name(self, override: str | None = None) -> str:
        """``override``, else this config's framework, else $LLMASOS_FRAMEWORK, else one installed."""
        return resolve_framework(override, self.framework)

    def build_model(self, framework: str | None = None) -> "Model":
        """The model the config describes, in ``framework`` (default: :meth:`framework_name`)."""
        from .model import Model

        model_config = self.model
        shape_kwargs: dict[str, Any]
        if self.data.dtype == "int64":
            shape_kwargs = {"inputs": {"input": {"shape": list(model_config.shape), "dtype": "int64"}}}
        elif model_config.input_dim is not None:
            shape_kwargs = {"input_dim": model_config.input_dim}
        else:
            shape_kwargs = {"input_shape": tuple(model_config.shape)}
        model = Model(output_dim=model_config.output_dim, framework=self.framework_name(framework),
                      name=model_config.name, **shape_kwargs)
        for index, layer in enumerate(model_config.layers):
            try:
                model.add_layer(layer.kind, layer.size, **layer.options)
            except SpecError as err:
                raise self._fail(f"{self.MODEL_KEY}.layers[{index}] (kind: {layer.kind})", str(err)) from None
        return model

    def _dataset(self, key: str, mode: str) -> "Dataset | None":
        from .data import Dataset

        value = getattr(self.data, key)
        if value is None:
            return None
        data = self.data
        return Dataset(str(self.path(value)), mode=mode, target=data.target, features=data.features,
                       chunk_size=data.chunk_size, shape=data.shape, dtype=data.dtype)

    def train_dataset(self) -> "Dataset":
        return self._dataset("train", "train")

    def test_dataset(self) -> "Dataset | None":
        """The test set (``data.test``), or None when the config has none."""
        return self._dataset("test", "test")

    def optimizer(self) -> Optimizer:
        return Optimizer(**self.optimizer_settings.options())

    def callbacks(self) -> list["Callback"]:
        """Early stopping and checkpoints as configured under ``training``."""
        from .callbacks import Checkpoint, EarlyStopping

        found: list[Callback] = []
        stopping = self.training.early_stopping
        if stopping is not None:
            found.append(EarlyStopping(patience=stopping.patience, monitor=stopping.monitor,
                                       min_delta=stopping.min_delta, restore_best=stopping.restore_best))
        if self.training.checkpoint_every is not None:
            found.append(Checkpoint(str(self.checkpoint_path), every=self.training.checkpoint_every))
        return found


class DistillDataConfig(DataConfig):
    unlabeled: str | None = None         # a file of inputs without labels: they learn from the teacher alone


class ZooTeacherConfig(BaseModel):
    """A zoo model as the teacher: ``zoo`` names it, ``pretrained`` its weights (True: the standard
    checkpoint from the local cache, or a path), any other key is an option of ``zoo.load``."""

    model_config = ConfigDict(extra="allow")

    zoo: str
    pretrained: bool | str = True


class DistillTrainingConfig(_Section):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    seed: NaturalInt | None = 0


class DistillationConfig(_Section):
    temperature: float = Field(default=4.0, gt=0, allow_inf_nan=False)
    alpha: float = Field(default=0.9, ge=0, le=1)      # the teacher's share of the loss on labelled rows


class DistillConfig(Config):
    """``llmasos distill``'s config: a teacher, the student to train (a model section as
    ``llmasos train`` takes, under ``student``), data, optimizer, training and distillation::

        teacher: teacher.h5             # an .h5 or .onnx path, a zoo name, or {zoo: NAME, pretrained: PATH, ...}
        student: {input_dim: 64, output_dim: 10, layers: [{kind: Dense, size: 16, activation: relu},
                                                          {kind: Dense, size: 10}]}
        data: {train: train.csv, test: test.csv, unlabeled: more.csv}   # unlabeled: optional
        optimizer: {name: Adam, lr: 0.001}
        training: {epochs: 10, batch_size: 32, seed: 0}
        distillation: {temperature: 4.0, alpha: 0.9}
        output: student.h5
    """

    MODEL_KEY: ClassVar[str] = "student"

    teacher: str | ZooTeacherConfig
    model: ModelConfig = Field(alias="student")
    data: DistillDataConfig
    training: DistillTrainingConfig = Field(default_factory=DistillTrainingConfig)   # type: ignore[assignment]
    distillation: DistillationConfig = Field(default_factory=DistillationConfig)
    output: str = "student.h5"

    def _check_training(self) -> None:
        """Nothing across keys to check: a distillation run has no early stopping or checkpoints."""

    def _check_files(self) -> None:
        super()._check_files()
        if self.data.unlabeled is not None and not self.path(self.data.unlabeled).is_file():
            raise self._fail("data.unlabeled", f"no such file: {self.path(self.data.unlabeled)}")
        if self.teacher_file is not None and not self.teacher_file.is_file():
            raise self._fail("teacher", f"no such file: {self.teacher_file}")

    @property
    def teacher_file(self) -> Path | None:
        """The teacher's .h5 or .onnx path; None for a zoo teacher."""
        if isinstance(self.teacher, str) and Path(self.teacher).suffix.lower() in (".h5", ".onnx"):
            return self.path(self.teacher)
        return None

    def load_teacher(self, framework: str | None = None) -> Any:
        """The teacher as :func:`llmasos.compress.distill` takes it: the path of an .h5 or .onnx, or
        a zoo Model built in ``framework``."""
        if self.teacher_file is not None:
            return str(self.teacher_file)
        from . import zoo

        settings = self.teacher if isinstance(self.teacher, ZooTeacherConfig) else ZooTeacherConfig(zoo=self.teacher)
        pretrained = settings.pretrained
        if isinstance(pretrained, str):
            candidate = self.path(pretrained)
            pretrained = str(candidate) if candidate.exists() else pretrained   # a file name the zoo may know
        return zoo.load(settings.zoo, self.framework_name(framework), pretrained=pretrained,
                        **(settings.model_extra or {}))

    def unlabeled_dataset(self) -> "Dataset | None":
        """The inputs of ``data.unlabeled`` (no label column), or None."""
        from .data import Dataset

        if self.data.unlabeled is None:
            return None
        data = self.data
        return Dataset(str(self.path(data.unlabeled)), mode="train", target=None, features=data.features,
                       chunk_size=data.chunk_size, shape=data.shape, dtype=data.dtype)

    def callbacks(self) -> list["Callback"]:
        return []


def load_config(path: str | os.PathLike, kind: type[Config] = Config) -> Config:
    """Read and validate a YAML config (``kind``: :class:`Config` for ``llmasos train``,
    :class:`DistillConfig` for ``llmasos distill``); its relative paths resolve against its folder."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty; it needs at least {kind.MODEL_KEY} and data")
    return kind.from_dict(data, base_dir=path.resolve().parent, source=str(path))


# -- error messages -------------------------------------------------------------------------------


def _describe(err: ValidationError, source: str, root: type[BaseModel]) -> str:
    """One line per problem: the key path, the bad value and what is allowed."""
    lines = []
    for problem in err.errors(include_url=False):
        key = _key_path(problem["loc"])
        kind = problem["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(problem["loc"][:-1], root)
            lines.append(f"{key}: unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else ""))
        elif kind == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            # A whole section as "the bad value" would bury the message; show only plain values.
            shown = "" if isinstance(problem["input"], (dict, list)) else f" = {problem['input']!r}"
            lines.append(f"{key}{shown}: {message}")
    return f"{source}: " + ("\n  ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines))


def _key_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """The keys the section at ``loc`` of a ``root`` config takes, by their names in the file."""
    section: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {field.alias or name: field for name, field in section.model_fields.items()}
        section = _section_of(fields[part].annotation) if part in fields else None
        if section is None:
            return []
    return [field.alias or name for name, field in section.model_fields.items()]


def _section_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_of(arg)
        if found is not None:
            return found
    return None


def _key_named_in(message: str, options: dict[str, Any]) -> str | None:
    """The option an Optimizer error is about: the one its message names first (None: unclear)."""
    if message.startswith("unknown optimizer"):
        return "name"
    positions = {key: m.start() for key in options if (m := re.search(rf"\b{re.escape(key)}\b", message))}
    return min(positions, key=positions.get) if positions else None
