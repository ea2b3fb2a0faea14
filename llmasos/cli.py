"""The ``llmasos`` command line; it mirrors the Python API.

::

    llmasos demo [--framework tf] [--dir DIR]       train on scikit-learn's digits, end to end
    llmasos train CONFIG [--framework tf] [--epochs N] [--out model.h5] [--nproc N]
                   [--kubeflow JOB.yaml [--image IMAGE] [--gpus N] [--pvc CLAIM] [--job-name NAME]]
    llmasos distill CONFIG [--framework tf] [--epochs N] [--out student.h5]
                                                    train a student on a teacher's outputs (see llmasos.config.DistillConfig)
    llmasos info model.h5|model.onnx                spec, framework, versions, metadata (ONNX: ops, shapes)
    llmasos export model.h5 [-o model.onnx] [--opset N] [--quantize dynamic|static --calibration DATA]
                   [--int8-target auto|avx2|avx512|vnni|arm64] [--fp16] [--external-data]
                   [--triton-repo DIR] [--kserve MANIFEST --storage-uri URI]
    llmasos bench model.onnx [--providers cpu,cuda] [--batch 1,8,32] [--energy]
    llmasos robust model.h5|model.onnx|--url http://host:port --model NAME --data test.csv [--eps 0,0.05,0.1]
                   [--attacks fgsm,pgd,deepfool,square]
                   [--samples N] [--queries 300] [--bounds 0,1] [--json FILE] [--plot FILE] [--save]
    llmasos serve PATH [--providers cuda,cpu] [--port 8000] [--max-batch 32] [--token-file FILE] [--model-control]
    llmasos zoo list                                names, tasks, frameworks, parameters, weight sources
    llmasos zoo export NAME -o model.onnx [--framework tf] [--pretrained [PATH]] [--num-classes N]
                                                    (+ model-encoder.onnx, model-decoder.onnx for generation)

Each subcommand is a pair of small functions: ``_add_<name>(subparsers)`` declares its arguments
and ``_<name>(args) -> int`` runs it. Add one by writing both and listing the first in
:data:`COMMANDS`.
Errors llmasos raises on purpose print ``error: <message>`` and exit with status 2.

>>> main(["--version"])  # doctest: +ELLIPSIS
llmasos ...
0
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .errors import LlmasosError, ModelFileError
from .callbacks import Callback

DEMO_EPOCHS = 10


# -- train --------------------------------------------------------------------------------------


def _add_train(commands: Any) -> None:
    parser = commands.add_parser("train", help="train the model a YAML config describes, then save it",
                                 description="Train the model a YAML config describes, evaluate it on data.test "
                                             "and save it (see llmasos.config for the format).")
    parser.add_argument("config", help="the YAML config file")
    parser.add_argument("--framework", help="torch or tf; overrides the config's framework")
    parser.add_argument("--epochs", type=int, help="overrides training.epochs")
    parser.add_argument("--out", help="where to save the model (.h5); overrides the config's output")
    parser.add_argument("--nproc", type=int, help="data-parallel local processes; overrides training.nproc")
    parser.add_argument("--kubeflow", metavar="JOB", help="write a Kubeflow PyTorchJob/TFJob running this training "
                                                          "on --nproc replicas instead of training here")
    parser.add_argument("--image", help="with --kubeflow: the container image (llmasos and the framework installed)")
    parser.add_argument("--gpus", type=int, default=0, help="with --kubeflow: GPUs per replica")
    parser.add_argument("--pvc", help="with --kubeflow: a PersistentVolumeClaim holding the config and data, "
                                      "mounted as the working folder")
    parser.add_argument("--job-name", help="with --kubeflow: the job's name (default: from the model's name)")
    parser.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> int:
    from .config import load_config

    from . import distributed

    config = load_config(args.config)
    settings = config.training
    nproc = settings.nproc if args.nproc is None else args.nproc
    if args.kubeflow:
        return _kubeflow(args, config, nproc)
    if distributed.context() is not None:   # under torchrun or a Kubeflow job: its launcher decides
        nproc = None
    model = config.build_model(args.framework)
    train, test = config.train_dataset(), config.test_dataset()
    say = print if distributed.is_main() else _quiet
    epochs = settings.epochs if args.epochs is None else args.epochs
    output = Path(args.out) if args.out else config.output_path
    optimizer = config.optimizer()
    say(f"llmasos train {args.config}: framework {model.framework}, {len(train):,} training rows"
        + (f", {len(test):,} test rows" if test is not None else ""))
    say(model.summary())
    say(f"optimizer {optimizer.name} lr={optimizer.lr:g}; {epochs} epochs, batch size {settings.batch_size}, "
        f"seed {settings.seed}" + (f", {nproc} processes" if nproc and nproc > 1 else ""))
    started = time.perf_counter()
    # worker processes (nproc > 1) cannot take a callback of this process: their epochs print afterwards
    workers = bool(nproc and nproc > 1)
    printer = [_EpochPrinter(epochs)] if distributed.is_main() and not workers else []
    history = model.train(train, optimizer, epochs=epochs, batch_size=settings.batch_size, validation=test,
                          seed=settings.seed, loss=settings.loss, metrics=settings.metrics,
                          callbacks=[*config.callbacks(), *printer], nproc=nproc)
    for logs in history.epochs if workers else ():
        _EpochPrinter(epochs).on_epoch_end(model, logs)
    say(f"trained in {time.perf_counter() - started:.1f} s")
    if test is not None:
        say(f"test: {_metrics(model.evaluate(test))}")
    model.save(output)
    say(f"saved {output}")
    return 0


# -- distill ------------------------------------------------------------------------------------


def _add_distill(commands: Any) -> None:
    parser = commands.add_parser("distill", help="train a student model on a teacher's outputs, then save it",
                                 description="Knowledge distillation as a YAML config describes it (teacher, "
                                             "student, data, optimizer, training, distillation, output: see "
                                             "llmasos.config.DistillConfig); evaluates on data.test, saves the student.")
    parser.add_argument("config", help="the YAML config file")
    parser.add_argument("--framework", help="the student's framework, torch or tf; overrides the config's")
    parser.add_argument("--epochs", type=int, help="overrides training.epochs")
    parser.add_argument("--out", help="where to save the student (.h5); overrides the config's output")
    parser.set_defaults(run=_distill)


def _distill(args: argparse.Namespace) -> int:
    from .compress import distill
    from .config import DistillConfig, load_config

    config = load_config(args.config, DistillConfig)
    settings, kd = config.training, config.distillation
    student = config.build_model(args.framework)
    teacher = config.load_teacher(student.framework)
    train, test, unlabeled = config.train_dataset(), config.test_dataset(), config.unlabeled_dataset()
    epochs = settings.epochs if args.epochs is None else args.epochs
    output = Path(args.out) if args.out else config.output_path
    optimizer = config.optimizer()
    teacher_name = config.teacher_file or getattr(teacher, "name", teacher)
    print(f"llmasos distill {args.config}: teacher {teacher_name}, student in {student.framework}, "
          f"{len(train):,} training rows" + (f", {len(unlabeled):,} unlabeled" if unlabeled is not None else "")
          + (f", {len(test):,} test rows" if test is not None else ""))
    print(student.summary())
    print(f"temperature {kd.temperature:g}, alpha {kd.alpha:g}; optimizer {optimizer.name} lr={optimizer.lr:g}; "
          f"{epochs} epochs, batch size {settings.batch_size}, seed {settings.seed}")
    started = time.perf_counter()
    distill(teacher, student, train, optimizer, epochs=epochs, temperature=kd.temperature, alpha=kd.alpha,
            unlabeled=unlabeled, validation=test, batch_size=settings.batch_size, seed=settings.seed,
            callbacks=[_EpochPrinter(epochs)], progress=False)
    print(f"distilled in {time.perf_counter() - started:.1f} s")
    if test is not None:
        print(f"test: {_metrics(student.evaluate(test))}")
    student.save(output)
    print(f"saved {output}")
    return 0


def _quiet(*_: Any) -> None:
    """Ranks other than 0 of a data-parallel run print nothing."""


def _kubeflow(args: argparse.Namespace, config: Any, nproc: int) -> int:
    from .kubeflow import DEFAULT_IMAGE, job_name, write_manifest

    framework = config.framework_name(args.framework)
    path = write_manifest(args.kubeflow, framework, args.config, name=args.job_name or job_name(config.model.name),
                          replicas=nproc, image=args.image or DEFAULT_IMAGE, gpus=args.gpus, pvc=args.pvc)
    kind = "PyTorchJob" if framework == "torch" else "TFJob"
    print(f"wrote {path}: a Kubeflow {kind} training {args.config} on {nproc} replica(s); "
          f"kubectl apply -f {path}")
    return 0


class _EpochPrinter(Callback):
    """Prints one line per epoch, so a run shows progress even where no progress bar is drawn."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, model: Any, logs: dict) -> bool:
        shown = {k: v for k, v in logs.items() if k not in ("epoch", "seconds", "lr")}
        print(f"epoch {logs['epoch']}/{self.epochs}: {_metrics(shown)} ({logs.get('seconds', 0):.1f} s)", flush=True)
        return False


def _metrics(values: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


# -- info ---------------------------------------------------------------------------------------


def _add_info(commands: Any) -> None:
    parser = commands.add_parser("info", help="describe a model file (.h5 or .onnx)")
    parser.add_argument("file", help="an llmasos .h5 file, or an .onnx file")
    parser.set_defaults(run=_info)


def _info(args: argparse.Namespace) -> int:
    path = Path(args.file)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        from .io import read_info

        details = read_info(path)
    elif suffix == ".onnx":
        from .export import info

        details = info(str(path))
    else:
        raise ModelFileError(f"{path}: llmasos info reads .h5 (llmasos models) and .onnx files, "
                             f"got {suffix or 'no suffix'!r}")
    # a robustness report (llmasos robust --save, robust.Report.attach) reads best as its table
    stored = details.get("robustness") or (details.get("metadata") or {}).pop("robustness", None)
    if isinstance(stored, dict):
        from .robust.report import Report

        details["robustness"] = "robustness:\n" + Report.from_dict(stored).table()
    print(_render(details))
    return 0


def _render(details: Any) -> str:
    """Key: value lines; nested mappings indented; the layer table ("summary") last."""
    if isinstance(details, str):
        return details
    lines, tables = [], []
    for key, value in details.items():
        if isinstance(value, str) and "\n" in value:
            tables.append(value)
        elif isinstance(value, dict):
            lines.append(f"{key}:" + ("" if value else " none"))
            lines += [f"  {k}: {_plain(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {_plain(value)}")
    return "\n".join(lines + tables)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "; ".join(", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# -- demo ---------------------------------------------------------------------------------------


def _add_demo(commands: Any) -> None:
    parser = commands.add_parser("demo", help="train, evaluate and save a model on bundled data, no set-up",
                                 description="Write scikit-learn's digits to CSV, train a small network on them, "
                                             "evaluate it and save it, printing each step and where files went.")
    parser.add_argument("--framework", help="torch or tf (default: $LLMASOS_FRAMEWORK, else the one installed)")
    parser.add_argument("--dir", help="folder for the CSVs and model.h5 (default: a new temporary folder)")
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .adapters import resolve_framework
    from .data import Dataset, digits_csv
    from .model import Model
    from .optim import Optimizer

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="llmasos-demo-"))
    framework = resolve_framework(args.framework)
    train_csv, test_csv = digits_csv(folder)
    train, test = Dataset(train_csv, mode="train"), Dataset(test_csv, mode="test")
    print(f"llmasos demo, framework {framework}")
    print("1. data: scikit-learn's digits (8x8 images as 64 pixel columns p0..p63 in [0, 1], column label 0-9)")
    print(f"   training: {len(train):,} rows -> {train_csv}")
    print(f"   test:     {len(test):,} rows -> {test_csv}")
    model = Model(input_dim=64, output_dim=10, framework=framework)
    model.add_layer("Dense", 128, activation="relu")
    model.add_layer("Dense", 10, activation="softmax")
    print("2. model:")
    print(model.summary())
    optimizer = Optimizer("Adam", lr=0.001)
    print(f"3. training: Adam lr=0.001, {DEMO_EPOCHS} epochs, batch size 32, seed 0, validating on the test rows")
    started = time.perf_counter()
    model.train(train, optimizer, epochs=DEMO_EPOCHS, batch_size=32, validation=test, seed=0,
                callbacks=[_EpochPrinter(DEMO_EPOCHS)])
    print(f"   trained in {time.perf_counter() - started:.1f} s")
    result = model.evaluate(test)
    print(f"4. evaluation on the test rows: test accuracy {result['accuracy']:.4f}, test loss {result['loss']:.4f}")
    saved = model.save(folder / "model.h5")
    print(f"5. saved {saved}")
    print(f"   inspect it: llmasos info {saved}")
    print(f"   load it:    Model.load({str(saved)!r}, framework='tf')")
    return 0


# -- serve --------------------------------------------------------------------------------------


def _add_serve(commands: Any) -> None:
    parser = commands.add_parser("serve", help="serve a .h5, an .onnx or a model repository over HTTP",
                                 description="Serve with ONNX Runtime over the Open Inference Protocol (v2, "
                                             "as Triton and KServe speak it) until Ctrl-C or SIGTERM.")
    parser.add_argument("path", help="a .h5, an .onnx file, or a folder repo/<model>/<version>/model.onnx")
    parser.add_argument("--providers", default="cpu", help="execution providers in fallback order (cuda,cpu)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", help="model name for a single file (default: the file's stem)")
    parser.add_argument("--max-batch", type=int, default=0, help="merge concurrent requests up to N rows")
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0, help="longest wait for a batch to fill")
    parser.add_argument("--token-file", metavar="FILE",
                        help="require 'Authorization: Bearer TOKEN' (health checks excepted), TOKEN being the "
                             "file's first line; without it, $LLMASOS_TOKEN if set")
    parser.add_argument("--token", help="the token itself (visible to other users in the process list: "
                                        "prefer --token-file or $LLMASOS_TOKEN)")
    parser.add_argument("--model-control", action="store_true",
                        help="allow POST /v2/repository/models/NAME/load and /unload (needs a token); "
                             "off by default, when they answer 403")
    parser.add_argument("--version-policy", default="latest", help="latest, latest:N, all, or pinned: 1,3")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between repository checks (0: off)")
    parser.add_argument("--max-concurrent", type=int, default=64,
                        help="inference requests served at once; more get 503 (default 64)")
    parser.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .serve import Deployer

    Deployer(args.path, providers=args.providers, host=args.host, port=args.port, name=args.name,
             max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms, token=args.token,
             token_file=args.token_file, model_control=args.model_control, max_concurrent=args.max_concurrent,
             version_policy=args.version_policy, poll_s=args.poll).deploy()
    return 0


# -- export -------------------------------------------------------------------------------------


def _add_export(commands: Any) -> None:
    parser = commands.add_parser("export", help="export a .h5 model to verified ONNX, optionally int8/fp16 copies",
                                 description="Export to ONNX, check the file and verify it against the model; "
                                             "--quantize and --fp16 also write <name>.int8.onnx (static: "
                                             "<name>.int8-qdq.onnx) and <name>.fp16.onnx beside it.")
    parser.add_argument("model", help="an llmasos .h5 file")
    parser.add_argument("-o", "--output", help="the ONNX file (default: the model's path with .onnx)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    parser.add_argument("--no-verify", action="store_true", help="skip comparing ONNX Runtime with the model")
    parser.add_argument("--external-data", action="store_true",
                        help="write the weights to <file>.data beside each file whatever their size (by default "
                             "only past protobuf's 2 GiB limit)")
    parser.add_argument("--quantize", choices=("dynamic", "static"), help="also write an INT8 copy")
    parser.add_argument("--calibration", help="typical inputs for --quantize static (CSV, Parquet, HDF5, NumPy)")
    parser.add_argument("--int8-target", default="auto",
                        help="the CPU the INT8 copy will run on: auto (this machine's), avx2, avx512 (no VNNI: "
                             "7-bit weights), vnni (AVX-512 VNNI, AVX-VNNI or AMX) or arm64")
    parser.add_argument("--fp16", action="store_true", help="also write a float16 copy (float32 inputs/outputs)")
    parser.add_argument("--eval", help="labelled held-out data: report each copy's accuracy against the fp32 file")
    parser.add_argument("--triton-repo", metavar="DIR",
                        help="also write a Triton model repository DIR/<name>/{config.pbtxt,1/model.onnx}")
    parser.add_argument("--name", help="the model's name in the repository or manifest (default: the file's stem)")
    parser.add_argument("--max-batch", type=int, help="Triton max_batch_size (default 32 when batch is dynamic)")
    parser.add_argument("--kserve", metavar="MANIFEST",
                        help="also write a KServe InferenceService for the repository (needs --storage-uri)")
    parser.add_argument("--storage-uri", help="where the Triton repository will be uploaded (s3://, gs://, pvc://)")
    parser.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> int:
    from . import export
    from .data import Dataset
    from .errors import ExportError

    if (args.quantize == "static") != bool(args.calibration):
        raise ExportError("--quantize static needs --calibration DATA, and --calibration is only for it")
    if args.kserve and not args.storage_uri:
        raise ExportError("--kserve needs --storage-uri: where the Triton repository will be uploaded")
    output = Path(args.output) if args.output else Path(args.model).with_suffix(".onnx")
    evaluation = Dataset(args.eval, mode="test") if args.eval else None
    print(export.to_onnx(args.model, output, opset=args.opset, verify=not args.no_verify,
                         external_data=True if args.external_data else None))
    if args.quantize:
        calibration = Dataset(args.calibration, mode="test") if args.calibration else None
        suffix = ".int8.onnx" if args.quantize == "dynamic" else ".int8-qdq.onnx"
        print(export.quantize(output, output.with_suffix(suffix), mode=args.quantize, calibration=calibration,
                              target=args.int8_target, eval_data=evaluation))
    if args.fp16:
        print(export.to_fp16(output, output.with_suffix(".fp16.onnx"), eval_data=evaluation))
    _write_serving_artifacts(args, output)
    return 0


def _write_serving_artifacts(args: argparse.Namespace, onnx_path: Path) -> None:
    """--triton-repo and --kserve: the same artifact, laid out for Triton or KServe."""
    if not (args.triton_repo or args.kserve):
        return
    from .serve.triton import write_kserve_manifest, write_triton_repo

    name = args.name or onnx_path.stem
    if args.triton_repo:
        print(f"Triton repository: {write_triton_repo(onnx_path, args.triton_repo, name, max_batch=args.max_batch)}")
    if args.kserve:
        print(f"KServe manifest: {write_kserve_manifest(args.kserve, name, args.storage_uri)}")


# -- bench --------------------------------------------------------------------------------------


def _add_bench(commands: Any) -> None:
    parser = commands.add_parser("bench", help="latency and throughput of an ONNX file in ONNX Runtime")
    parser.add_argument("file", help="an .onnx file")
    parser.add_argument("--providers", default="cpu", help="execution providers in fallback order (cuda,cpu)")
    parser.add_argument("--batch", default=(1, 8, 32), type=_batch_sizes, help="batch sizes (default 1,8,32)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per batch size (default 1)")
    parser.add_argument("--energy", action="store_true",
                        help="joules per prediction, from RAPL/NVML counters or an estimate that says so")
    parser.set_defaults(run=_bench)


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes are positive ints separated by commas, got {text!r}")
    return sizes


def _bench(args: argparse.Namespace) -> int:
    from .export import bench
    from .export.benchmark import format_table

    rows = bench(args.file, providers=args.providers, batches=args.batch, seconds=args.seconds, energy=args.energy)
    print(f"llmasos bench {args.file}")
    print(format_table(rows))
    return 0


# -- zoo ----------------------------------------------------------------------------------------


def _add_zoo(commands: Any) -> None:
    parser = commands.add_parser("zoo", help="list the model zoo, or export one of its models to ONNX")
    actions = parser.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="names, tasks, frameworks, parameter counts, weight sources").set_defaults(
        run=_zoo_list)
    export = actions.add_parser("export", help="build a zoo model and export it to verified ONNX")
    export.add_argument("name", help="a model name from llmasos zoo list")
    export.add_argument("-o", "--output", required=True, help="the ONNX file")
    export.add_argument("--framework", help="torch or tf (default: $LLMASOS_FRAMEWORK, else the one installed)")
    export.add_argument("--pretrained", nargs="?", const=True, default=False,
                        help="alone: the standard weights from the local caches; or a checkpoint path, file name "
                             "or Hugging Face repo id (never downloaded)")
    export.add_argument("--num-classes", type=int, help="replace the classifier head with one of N classes")
    export.add_argument("--input-size", type=int, help="square image size (default: the model's own)")
    export.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    export.set_defaults(run=_zoo_export)


def _zoo_list(args: argparse.Namespace) -> int:
    from . import zoo

    print(zoo.registry.table(zoo.list()))
    return 0


def _zoo_export(args: argparse.Namespace) -> int:
    from . import export, zoo

    model = zoo.load(args.name, args.framework, pretrained=args.pretrained, num_classes=args.num_classes,
                     input_size=args.input_size)
    print(export.to_onnx(model, args.output, opset=args.opset))
    output = Path(args.output)
    parts = model.generation_parts() if hasattr(model, "generation_parts") else {}
    for part, part_model in parts.items():  # what generation from ONNX Runtime runs
        print(export.to_onnx(part_model, output.with_name(f"{output.stem}-{part}{output.suffix}"), opset=args.opset))
    return 0


# -- robust -------------------------------------------------------------------------------------


def _add_robust(commands: Any) -> None:
    parser = commands.add_parser("robust", help="adversarial robustness report of a .h5 (gradient attacks), an "
                                                ".onnx or a served model (query-only Square attack)")
    parser.add_argument("model", nargs="?", help="an llmasos .h5 file, or an .onnx file (attacked through its "
                                                 "outputs only); leave out with --url")
    parser.add_argument("--url", help="attack a served model instead (Open Inference Protocol v2: llmasos serve, "
                                      "KServe, Triton), e.g. http://127.0.0.1:8000; $LLMASOS_TOKEN is sent if set")
    parser.add_argument("--model", dest="served", metavar="NAME", help="the served model's name (with --url)")
    parser.add_argument("--data", required=True, help="labelled test data (CSV, Parquet, ...), inputs in --bounds")
    parser.add_argument("--target", default="label", help="the label column (default: label)")
    parser.add_argument("--eps", default="0,0.05,0.1", help="comma-separated eps values (default: 0,0.05,0.1)")
    parser.add_argument("--attacks", help="comma-separated: fgsm, pgd, deepfool, square (default: fgsm,pgd for "
                                          "a .h5, square for an .onnx)")
    parser.add_argument("--samples", type=int, help="attack only the first N examples")
    parser.add_argument("--queries", type=int, default=300, help="queries per example for square (default 300)")
    parser.add_argument("--bounds", help="the range inputs may take, low,high (default 0,1; for a model that "
                                         "carries its preprocessing mean/std, pixels in [0, 1] and eps in pixel units)")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--plot", help="also plot accuracy against eps to this image")
    parser.add_argument("--save", action="store_true", help="store the report in the model file (metadata "
                                                            "'robustness', shown by llmasos info)")
    parser.set_defaults(run=_robust)


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        from .errors import AttackError

        raise AttackError(f"--{what} takes comma-separated numbers, got {text!r}") from None


def _robust(args: argparse.Namespace) -> int:
    from . import Dataset, Model, robust

    served = args.url is not None
    if served and (args.model is not None or not args.served):
        raise ModelFileError("--url attacks a served model: give its name with --model NAME, and no model file")
    if not served and args.model is None:
        raise ModelFileError("llmasos robust needs a model file (.h5 or .onnx), or --url and --model for a served one")
    if not served and args.served:
        raise ModelFileError("--model NAME goes with --url (a served model); a file is given as the first argument")
    path = Path(args.model or "")
    onnx_file = served or path.suffix.lower() == ".onnx"
    if not served and not onnx_file and path.suffix.lower() not in (".h5", ".hdf5"):
        raise ModelFileError(f"{path}: llmasos robust reads .h5 and .onnx files, got {path.suffix or 'no suffix'!r}")
    if not served and not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if served and args.save:
        raise ModelFileError("--save stores the report in a model file; a served model has none here (use --json)")
    x, y = Dataset(args.data, mode="test", target=args.target).arrays()
    if args.samples is not None:
        x, y = x[:args.samples], y[:args.samples]
    bounds = None if args.bounds is None else tuple(_numbers(args.bounds, "bounds"))
    names = (args.attacks or ("square" if onnx_file else "fgsm,pgd")).split(",")
    attacks = [robust.Square(queries=args.queries) if name.strip() == "square" else name.strip() for name in names]
    target: Any
    if served:
        target = robust.remote(args.url, args.served)
        shape = list(target.input_shape)
    elif onnx_file:
        from .export import info

        target, shape = str(path), info(str(path))["inputs"][0]["shape"][1:]
    else:
        target = Model.load(str(path))
    if onnx_file and all(isinstance(d, int) and d > 0 for d in shape) and x.ndim == 2:   # flat rows: the model's layout
        x = x.reshape(len(x), *shape)
    report = robust.evaluate(target, (x, y), attacks=attacks, eps=_numbers(args.eps, "eps"), bounds=bounds)
    print(report.table())
    if args.json:
        Path(args.json).write_text(report.to_json())
    if args.plot:
        report.plot(args.plot)
    if args.save:
        report.attach(target)
        if not onnx_file:
            target.save(str(path))
        print(f"saved the report in {path} (llmasos info shows it)")
    return 0


COMMANDS: dict[str, Callable[[Any], None]] = {"train": _add_train, "distill": _add_distill, "info": _add_info,
                                               "demo": _add_demo, "serve": _add_serve, "export": _add_export, "bench": _add_bench,
                                               "zoo": _add_zoo, "robust": _add_robust}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmasos", description="Describe a model once, train it in PyTorch or "
                                                                 "TensorFlow, ship it as ONNX.")
    parser.add_argument("--version", action="version", version=f"llmasos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in COMMANDS.items():
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad usage or an llmasos error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors; keep main() returning a status
        return exit_.code if isinstance(exit_.code, int) else 0
    try:
        return args.run(args)
    except LlmasosError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
