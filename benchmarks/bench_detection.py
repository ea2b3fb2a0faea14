"""Detection benchmark: the zoo's YOLOS against transformers' ``YolosForObjectDetection``, every
runtime in one table (ms per batch, ratio to transformers, largest output difference).

    python benchmarks/bench_detection.py                      # small (yolos-tiny's shape) and base, batch 1
    python benchmarks/bench_detection.py --sizes small --repeats 5 --threads 1
    python benchmarks/bench_detection.py --quick              # a toy YOLOS: checks the script runs

Sizes, random weights: ``small`` is hustvl/yolos-tiny's architecture (hidden 192, 12 layers,
3 heads, 100 detection tokens) at 256x384; ``base`` is hustvl/yolos-base's (hidden 768, 12
layers) at its config's 512x864. Rows: transformers (the reference); llmasos torch (module), the
spec-compiled ``nn.Module`` called directly (target ratio <= 1.05); torch and TF through
``Model.predict``; ONNX Runtime on the torch model's export. Outputs compared are the logits and
the boxes side by side. Times are medians of round-robin repeats (see bench_zoo.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from llmasos.cpu import describe

from bench_zoo import print_against_reference

SIZES = {
    "toy": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "image_size": [64, 96], "patch_size": 16, "num_detection_tokens": 10},
    "small": {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3, "intermediate_size": 768,
              "image_size": [256, 384], "num_detection_tokens": 100},
    "base": {"image_size": [512, 864]},   # YolosConfig's defaults are yolos-base's
}


def runners(folder: str, path: str, only: set[str], threads: int | None) -> dict:
    """llmasos' rows, each giving logits and boxes side by side (as the reference row does)."""
    import torch

    from llmasos import export, zoo

    out = {}
    ours = zoo.load("yolos", "torch", pretrained=path)
    if "torch" in only:
        module = ours.backend_model.eval()

        def call(x):
            with torch.inference_mode():
                return np.concatenate([t.numpy() for t in module(torch.from_numpy(x))], axis=-1)

        out["llmasos torch (module)"] = call
        out["llmasos torch (predict)"] = lambda x: np.concatenate(ours.predict(x), axis=-1)
    if "tf" in only:
        if threads:
            import tensorflow as tf  # before TensorFlow runs anything, or the settings are refused

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        tf_model = zoo.load("yolos", "tf", pretrained=path)
        out["llmasos tf (predict)"] = lambda x: np.concatenate(tf_model.predict(x), axis=-1)
    if "onnx" in only:
        import onnxruntime

        onnx_path = os.path.join(folder, "yolos.onnx")
        export.to_onnx(ours, onnx_path)
        settings = onnxruntime.SessionOptions()
        settings.intra_op_num_threads = threads or 0
        session = export.load(onnx_path, providers=["cpu"], options=settings)
        name = session.get_inputs()[0].name
        out["onnxruntime cpu"] = lambda x: np.concatenate(session.run(None, {name: x}), axis=-1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,base", help="comma list of: " + ", ".join(SIZES))
    parser.add_argument("--batches", default="1", help="comma list of batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="torch,tf,onnx", help="runtimes besides transformers: torch, tf, onnx")
    parser.add_argument("--threads", type=int, help="intra-op threads of every runtime (default: theirs)")
    parser.add_argument("--quick", action="store_true", help="the toy size, batch 1, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.batches, args.repeats = "toy", "1", 2

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {describe()}; load average {os.getloadavg()[0]:.1f}; threads {args.threads or 'default'}",
          flush=True)
    for size in args.sizes.split(","):
        torch.manual_seed(0)
        config = transformers.YolosConfig(**SIZES[size], num_labels=91)
        reference = transformers.YolosForObjectDetection(config).eval()
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "yolos")
            reference.save_pretrained(path)

            def hf(pixels):
                with torch.inference_mode():
                    result = reference(torch.from_numpy(pixels))
                return np.concatenate([result.logits.numpy(), result.pred_boxes.numpy()], axis=-1)

            run = {"transformers": hf, **runners(folder, path, set(args.only.split(",")), args.threads)}
            height, width = config.image_size
            print(f"\nYOLOS {size} ({config.hidden_size} wide, {config.num_hidden_layers} layers, "
                  f"{config.num_detection_tokens} detection tokens, {height}x{width}, random weights): ms per "
                  f"batch (wall, median of {args.repeats}); ratio vs transformers")
            print(f"{'runtime':26s} {'batch':>5s} {'ms':>9s} {'ratio':>7s} {'target':>7s} {'max |diff|':>11s}")
            rng = np.random.default_rng(0)
            for batch in map(int, args.batches.split(",")):
                pixels = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
                print_against_reference(run, pixels, args.repeats, "batch", str(batch))


if __name__ == "__main__":
    main()
