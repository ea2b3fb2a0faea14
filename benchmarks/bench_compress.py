"""Smaller models, measured side by side in one run (issue #17).

    python benchmarks/bench_compress.py                    # all
    python benchmarks/bench_compress.py --only distill --quick

* distill: scikit-learn's digits, the first 1,400 images for training of which only 200 keep
  their label, the last 397 to test. A digits CNN teacher (3x3 convolutions of 16 and 32
  channels, max-pool, Dense 64, Dense 10) trains on the 1,400 labelled images; a 64-16-10 MLP
  student trains 10 epochs (Adam 1e-3, batch 32) from the 200 labels alone, or distilled
  (T = 4, alpha = 0.9) on the 200 labelled rows plus the 1,200 others unlabelled (they learn from
  the teacher alone), or from the teacher alone at T = 2. Mean (and min-max) accuracy over seeds,
  per framework, a torch teacher teaching the TF student too, beside a hand-written torch loop of
  the same recipe (torch.nn.functional). Target: distilled >= labels-only + 10 points.
* hints: the distilled recipe above with FitNets hints added (``hints={"dense": "dense"}``: the
  student's 16 hidden units, through a learned projection, regressed on the teacher's Dense 64),
  at two hint weights; test accuracy and the seconds each run takes, per framework.
* prune: the zoo's ResNet-18 (torchvision's layout, 1,000 classes, 224x224), 50% of the channels
  of every prunable group removed by L1 magnitude (``model.prune(0.5, structured=True)``), beside
  Torch-Pruning (``MetaPruner`` with L1 ``MagnitudeImportance``, ``fc`` ignored) on torchvision's
  own ResNet-18 when ``torch-pruning`` is installed: parameters, ONNX file size, and ONNX Runtime
  latency at batch 1 (the files take turns; medians of rounds, with their range). Targets:
  <= 0.30x the parameters, a speed-up >= 0.9x Torch-Pruning's.
* finetune: the pruned model trains as any other: the digits CNN above trained 10 epochs, pruned
  by half, then the full and the pruned model fine-tuned the same epochs; test accuracy of each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from llmasos.cpu import describe

LABELLED, TRAIN = 200, 1400
EPOCHS, BATCH, LR = 10, 32, 1e-3


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return x[:TRAIN], data.target[:TRAIN].astype(np.int64), x[TRAIN:], data.target[TRAIN:].astype(np.int64)


def teacher_cnn(framework):
    from llmasos import Model

    model = Model(input_shape=(1, 8, 8), output_dim=10, framework=framework)
    model.add_layer("Conv2D", 16, kernel_size=3, padding="same", activation="relu")
    model.add_layer("Conv2D", 32, kernel_size=3, padding="same", activation="relu")
    model.add_layer("MaxPool2D", 2).add_layer("Flatten")
    return model.add_layer("Dense", 64, activation="relu").add_layer("Dense", 10, activation="softmax")


def student_mlp(framework):
    from llmasos import Model

    model = Model(input_dim=64, output_dim=10, framework=framework)
    return model.add_layer("Dense", 16, activation="relu").add_layer("Dense", 10)


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x), 1) == y))


def llmasos_student(framework, teacher, x, y, seed, recipe) -> float:
    """Test accuracy of a student trained by llmasos with ``recipe`` (labels / distilled / teacher)."""
    from llmasos import Optimizer, compress

    student = student_mlp(framework)
    labelled = (x[:LABELLED], y[:LABELLED])
    options = dict(epochs=EPOCHS, batch_size=BATCH, seed=seed, progress=False)
    if recipe == "labels":
        student.train(*labelled, optimizer=Optimizer("Adam", lr=LR), loss="cross_entropy", **options)
    elif recipe == "distilled":
        compress.distill(teacher, student, labelled, Optimizer("Adam", lr=LR), temperature=4.0, alpha=0.9,
                         unlabeled=x[LABELLED:], **options)
    else:
        compress.distill(teacher, student, x, Optimizer("Adam", lr=LR), temperature=2.0, **options)
    return student


def torch_student(teacher_logits, x, y, seed, recipe):
    """The same recipe written in plain torch: the reference the issue's figures come from."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    rows = LABELLED if recipe == "labels" else len(x)
    labels = torch.from_numpy(np.where(np.arange(len(y)) < LABELLED, y, -1)[:rows] if recipe != "teacher"
                              else np.full(rows, -1))
    temperature, alpha = (4.0, 0.9) if recipe == "distilled" else (2.0, 1.0)
    inputs, logits = torch.from_numpy(x[:rows]), torch.from_numpy(teacher_logits[:rows])
    generator = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        for batch in torch.randperm(rows, generator=generator).split(BATCH):
            out, target = net(inputs[batch]), labels[batch]
            labelled = target >= 0
            ce = torch.zeros(len(batch))
            ce[labelled] = F.cross_entropy(out[labelled], target[labelled], reduction="none")
            if recipe == "labels":
                loss = ce.mean()
            else:
                kl = F.kl_div(F.log_softmax(out / temperature, 1), F.log_softmax(logits[batch] / temperature, 1),
                              reduction="none", log_target=True).sum(1) * temperature ** 2
                loss = torch.where(labelled, alpha * kl + (1 - alpha) * ce, kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net


def bench_distill(seeds: int) -> None:
    from llmasos import Optimizer
    from llmasos.compress import Teacher

    x, y, x_test, y_test = digits()
    teachers = {}
    for framework in ("torch", "tf"):
        start = time.perf_counter()
        teacher = teacher_cnn(framework)
        teacher.train(x, y, optimizer=Optimizer("Adam", lr=LR), epochs=EPOCHS, batch_size=BATCH, seed=0,
                      progress=False)
        teachers[framework] = teacher
        print(f"teacher CNN ({framework}, {teacher.spec.parameter_count():,} parameters, 1,400 labels): "
              f"test accuracy {accuracy(teacher, x_test, y_test):.3f} ({time.perf_counter() - start:.0f} s)")
    print(f"students: 64-16-10 MLP, {EPOCHS} epochs, mean of {seeds} seed(s) [min-max]; test: last 397 digits")
    runs = {"plain torch": None, "llmasos torch": ("torch", "torch"), "llmasos tf": ("tf", "tf"),
            "llmasos tf, torch teacher": ("tf", "torch")}
    reference_logits = Teacher(teachers["torch"]).logits(x)
    print(f"{'':28}{'labels only':>18}{'distilled T=4':>18}{'teacher only T=2':>18}{'gain':>8}")
    for name, pair in runs.items():
        cells = {}
        for recipe in ("labels", "distilled", "teacher"):
            scores = []
            for seed in range(seeds):
                if pair is None:
                    import torch

                    net = torch_student(reference_logits, x, y, seed, recipe).eval()
                    with torch.no_grad():
                        scores.append(float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()))
                else:
                    student = llmasos_student(pair[0], teachers[pair[1]], x, y, seed, recipe)
                    scores.append(accuracy(student, x_test, y_test))
            cells[recipe] = scores
        text = [f"{statistics.mean(s):.3f} [{min(s):.2f}-{max(s):.2f}]" for s in cells.values()]
        gain = 100 * (statistics.mean(cells["distilled"]) - statistics.mean(cells["labels"]))
        print(f"{name:28}" + "".join(f"{t:>18}" for t in text) + f"{gain:>+7.1f}")
    print("target: distilled >= labels only + 10 points in both frameworks")


def bench_hints(seeds: int) -> None:
    from llmasos import Optimizer, compress

    x, y, x_test, y_test = digits()
    print(f"hints: digits, 200 labels + 1,200 unlabelled, T=4, alpha=0.9, {EPOCHS} epochs, mean of {seeds} "
          f"seed(s) [min-max]; student hint 'dense' (16) -> teacher 'dense' (64)")
    print(f"{'':12}{'distilled':>24}{'+ hints w=0.1':>24}{'+ hints w=1':>24}")
    for framework in ("torch", "tf"):
        teacher = teacher_cnn(framework)
        teacher.train(x, y, optimizer=Optimizer("Adam", lr=LR), epochs=EPOCHS, batch_size=BATCH, seed=0,
                      progress=False)
        cells = []
        for hints, weight in ((None, 1.0), ({"dense": "dense"}, 0.1), ({"dense": "dense"}, 1.0)):
            scores, seconds = [], []
            for seed in range(seeds):
                student = student_mlp(framework)
                start = time.perf_counter()
                compress.distill(teacher, student, (x[:LABELLED], y[:LABELLED]), Optimizer("Adam", lr=LR),
                                 temperature=4.0, alpha=0.9, unlabeled=x[LABELLED:], epochs=EPOCHS, batch_size=BATCH,
                                 seed=seed, progress=False, hints=hints, hint_weight=weight)
                seconds.append(time.perf_counter() - start)
                scores.append(accuracy(student, x_test, y_test))
            cells.append(f"{statistics.mean(scores):.3f} [{min(scores):.2f}-{max(scores):.2f}] "
                         f"{statistics.median(seconds):.0f}s")
        print(f"{framework:12}" + "".join(f"{c:>24}" for c in cells))


def onnx_latency(paths: dict[str, str], rounds: int) -> dict[str, list[float]]:
    """Median ms per batch-1 run of each file in ONNX Runtime, per round, the files taking turns."""
    import onnxruntime as ort

    from llmasos.export.benchmark import latency

    image = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    sessions = {name: ort.InferenceSession(path, providers=["CPUExecutionProvider"]) for name, path in paths.items()}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for index in range(rounds):
        order = list(sessions) if index % 2 == 0 else list(reversed(sessions))
        for name in order:
            feed = {sessions[name].get_inputs()[0].name: image}
            times[name].append(float(np.median(latency(sessions[name], feed, seconds=1.0, min_runs=10))))
    return times


def torch_pruning_resnet18(folder: str) -> dict | None:
    """Torch-Pruning's 50% L1 pruning of torchvision's ResNet-18, exported; None when not installed."""
    try:
        import torch_pruning as tp
    except ImportError:
        print("torch-pruning is not installed (pip install torch-pruning): its column is left out")
        return None
    import torch
    import torchvision

    net = torchvision.models.resnet18().eval()
    full = sum(p.numel() for p in net.parameters())
    example = torch.randn(1, 3, 224, 224)
    pruner = tp.pruner.MetaPruner(net, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=[net.fc])
    pruner.step()
    path = f"{folder}/tp.onnx"
    torch.onnx.export(net, (torch.randn(2, 3, 224, 224),), path, dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    return {"params": sum(p.numel() for p in net.parameters()), "full": full, "path": path}


def bench_prune(rounds: int) -> None:
    import os
    import tempfile

    from llmasos import export, zoo

    folder = tempfile.mkdtemp()
    model = zoo.load("resnet18", framework="torch", pretrained=False).build(seed=0)
    start = time.perf_counter()
    slim = model.prune(0.5, structured=True)
    seconds = time.perf_counter() - start
    paths = {"llmasos full": f"{folder}/full.onnx", "llmasos 50%": f"{folder}/slim.onnx"}
    export.to_onnx(model, paths["llmasos full"])
    export.to_onnx(slim, paths["llmasos 50%"])
    params = {"llmasos full": model.spec.parameter_count(), "llmasos 50%": slim.spec.parameter_count()}
    reference = torch_pruning_resnet18(folder)
    if reference is not None:
        paths["Torch-Pruning 50%"] = reference["path"]
        params["Torch-Pruning 50%"] = reference["params"]
    times = onnx_latency(paths, rounds)
    print(f"ResNet-18 (1,000 classes, 224x224), 50% structured L1 pruning (llmasos: {seconds:.1f} s); "
          f"ONNX Runtime CPU, batch 1, median of {rounds} rounds [min-max]")
    print(f"{'':20}{'parameters':>12}{'ratio':>8}{'ONNX MB':>9}{'ms':>20}{'speed-up':>10}")
    base = statistics.median(times["llmasos full"])
    for name, path in paths.items():
        full = reference["full"] if name.startswith("Torch") else params["llmasos full"]
        ms = times[name]
        print(f"{name:20}{params[name]:>12,}{params[name] / full:>8.2f}{os.path.getsize(path) / 1e6:>9.1f}"
              f"{statistics.median(ms):>9.2f} [{min(ms):.1f}-{max(ms):.1f}]{base / statistics.median(ms):>9.2f}x")
    if reference is not None:
        ours = [a / b for a, b in zip(times["llmasos full"], times["llmasos 50%"])]
        theirs = [a / b for a, b in zip(times["llmasos full"], times["Torch-Pruning 50%"])]
        print(f"llmasos speed-up / Torch-Pruning's: {statistics.median(ours) / statistics.median(theirs):.2f} "
              f"(target >= 0.9)")
    print("target: <= 0.30x the parameters")


def bench_finetune(epochs: int) -> None:
    from llmasos import Optimizer

    x, y, x_test, y_test = digits()
    options = dict(optimizer=Optimizer("Adam", lr=1e-3), batch_size=32, seed=0, progress=False)
    full = teacher_cnn("torch")
    full.train(x, y, epochs=EPOCHS, **options)
    trained = accuracy(full, x_test, y_test)
    slim = full.prune(0.5, structured=True)
    pruned = accuracy(slim, x_test, y_test)
    full.train(x, y, epochs=epochs, **options)
    slim.train(x, y, epochs=epochs, **options)
    print(f"digits CNN (torch), {EPOCHS} epochs on 1,400 images, pruned by half, then {epochs} more epochs each:")
    print(f"  full ({full.spec.parameter_count():,} parameters): {trained:.3f} -> {accuracy(full, x_test, y_test):.3f}")
    print(f"  pruned ({slim.spec.parameter_count():,}): {pruned:.3f} right after pruning -> "
          f"{accuracy(slim, x_test, y_test):.3f} fine-tuned")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="distill,hints,prune,finetune",
                        help="comma-separated: distill, hints, prune, finetune")
    parser.add_argument("--quick", action="store_true", help="fewer seeds and repeats")
    args = parser.parse_args()
    print(describe())
    chosen = set(args.only.split(","))
    if "distill" in chosen:
        bench_distill(seeds=2 if args.quick else 5)
    if "hints" in chosen:
        bench_hints(seeds=2 if args.quick else 5)
    if "prune" in chosen:
        bench_prune(rounds=3 if args.quick else 7)
    if "finetune" in chosen:
        bench_finetune(epochs=2 if args.quick else 3)


if __name__ == "__main__":
    main()
