"""ViT benchmark: the zoo's ViT against transformers' ``ViTForImageClassification``, every runtime
in one table (ms per batch, ratio to transformers, largest logit difference).

    python benchmarks/bench_vit.py                       # ViT-B/16 at 224, batch 1 and 8
    python benchmarks/bench_vit.py --batches 1 --repeats 5 --threads 1
    python benchmarks/bench_vit.py --quick               # a tiny ViT: checks the script runs

Rows, all with the same random weights: transformers (the reference); llmasos torch (module),
the spec-compiled ``nn.Module`` called directly (target ratio <= 1.05); torch and TF through
``Model.predict``; ONNX Runtime on the torch model's export. Times are medians of round-robin
repeats (see bench_zoo.py); ``--threads`` sets every runtime's intra-op threads.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from llmasos.cpu import describe

from bench_zoo import llmasos_runners, print_against_reference

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "image_size": 64, "patch_size": 16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="torch,tf,onnx", help="runtimes besides transformers: torch, tf, onnx")
    parser.add_argument("--threads", type=int, help="intra-op threads of every runtime (default: theirs)")
    parser.add_argument("--quick", action="store_true", help="a tiny ViT, batch 1, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.repeats = "1", 2

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.ViTConfig(**(TINY if args.quick else {}))
    reference = transformers.ViTForImageClassification(config).eval()
    print(f"CPU: {describe()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "vit")
        reference.save_pretrained(path)

        def hf(pixels):
            with torch.inference_mode():
                return reference(torch.from_numpy(pixels)).logits.numpy()

        run = {"transformers": hf, **llmasos_runners("vit", folder, set(args.only.split(",")), args.threads,
                                                     pretrained=path, logits=True)}
        size = config.image_size
        print(f"\nViT ({'tiny' if args.quick else 'ViT-B/16'}, {size}x{size}, random weights): ms per batch "
              f"(wall, median of {args.repeats}); ratio vs transformers")
        print(f"{'runtime':26s} {'batch':>5s} {'ms':>9s} {'ratio':>7s} {'target':>7s} {'max |diff|':>11s}")
        rng = np.random.default_rng(0)
        for batch in map(int, args.batches.split(",")):
            pixels = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            print_against_reference(run, pixels, args.repeats, "batch", str(batch))


if __name__ == "__main__":
    main()
