"""Face embedding benchmark: the zoo's facenet (InceptionResnetV1) against facenet-pytorch's own
module, every runtime in one table (ms per batch of faces, ratio to the reference, largest
embedding difference).

    python benchmarks/bench_faces.py                      # 160x160 faces, batch 1 and 8
    python benchmarks/bench_faces.py --batches 1 --repeats 5 --threads 1
    python benchmarks/bench_faces.py --quick              # 96x96, batch 1, 2 repeats: checks the script runs

Rows, all with the same random weights (facenet-pytorch's random initialisation, loaded through
``pretrained=``): facenet-pytorch (the reference, when installed: ``pip install --no-deps
facenet-pytorch``; without it the spec-compiled module is the reference); llmasos torch (module),
the spec-compiled ``nn.Module`` called directly; torch and TF through ``Model.predict``; ONNX
Runtime on the torch model's export. Inputs are standardised faces; times are medians of
round-robin repeats (see bench_zoo.py); ``--threads`` sets every runtime's intra-op threads.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from llmasos.cpu import describe

from bench_zoo import llmasos_runners, print_against_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    parser.add_argument("--size", type=int, default=160, help="face size in pixels (published: 160)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="torch,tf,onnx", help="runtimes besides the reference: torch, tf, onnx")
    parser.add_argument("--threads", type=int, help="intra-op threads of every runtime (default: theirs)")
    parser.add_argument("--quick", action="store_true", help="96x96 faces, batch 1, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.repeats, args.size = "1", 2, 96

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from facenet_pytorch import InceptionResnetV1
    except ImportError:
        InceptionResnetV1 = None
        print("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch): the llmasos torch "
              "module is the reference")
    print(f"CPU: {describe()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        run = {}
        if InceptionResnetV1 is not None:
            reference = InceptionResnetV1().eval()
            checkpoint = os.path.join(folder, "facenet.pt")
            torch.save(reference.state_dict(), checkpoint)

            def facenet_pytorch(faces):
                with torch.inference_mode():
                    return reference(torch.from_numpy(faces)).numpy()

            run["facenet-pytorch"] = facenet_pytorch
        options = {"pretrained": checkpoint} if checkpoint else {"seed": 0}
        run.update(llmasos_runners("facenet", folder, set(args.only.split(",")) | {"torch"}, args.threads,
                                   input_size=args.size, **options))
        label = "facenet-pytorch" if "facenet-pytorch" in run else "llmasos torch (module)"
        print(f"\nfacenet (InceptionResnetV1, {args.size}x{args.size}, random weights): ms per batch "
              f"(wall, median of {args.repeats}); ratio vs {label}")
        print(f"{'runtime':26s} {'batch':>5s} {'ms':>9s} {'ratio':>7s} {'target':>7s} {'max |diff|':>11s}")
        rng = np.random.default_rng(0)
        for batch in map(int, args.batches.split(",")):
            pixels = rng.integers(0, 256, (batch, 3, args.size, args.size)).astype(np.float32)
            faces = ((pixels - 127.5) / 128.0).astype(np.float32)   # facenet's fixed_image_standardization
            print_against_reference(run, faces, args.repeats, "batch", str(batch), reference=label)


if __name__ == "__main__":
    main()
