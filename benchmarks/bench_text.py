"""Text zoo benchmark: BERT inference against transformers, and GPT-2 generation with and without
the key/value cache, every runtime in one table per model.

    python benchmarks/bench_text.py                          # both, BERT-base size, GPT-2 small
    python benchmarks/bench_text.py --model bert --batches 1,8 --repeats 5
    python benchmarks/bench_text.py --model gpt2 --new-tokens 32 --only torch,onnx

BERT (random weights in a bert-base-uncased-sized config, sequence 128), ms per batch:

* transformers: ``BertModel``, the reference;
* llmasos torch (module): the spec-compiled ``nn.Module`` called on tensors (target ratio <= 1.05);
* llmasos torch (predict) / llmasos tf (predict): through ``Model.predict`` (NumPy in and out);
* onnxruntime cpu: the torch model exported with ``llmasos.export.to_onnx``.

GPT-2 (random weights, GPT-2 small's config) greedy generation in new tokens per second, with
the cache (the incremental decoder, one position per step) and without (the whole sequence
every step), in torch, TensorFlow and ONNX Runtime, beside transformers' own ``generate``; every
row must produce the same tokens. Times are medians of round-robin repeats (see bench_zoo.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Callable

import numpy as np

from llmasos.cpu import describe

from bench_zoo import llmasos_runners, measure, print_against_reference

BERT_BASE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "max_position_embeddings": 512}


def bert_runners(folder: str, only: set[str]) -> dict[str, Callable]:
    import torch
    import transformers

    torch.manual_seed(0)
    reference = transformers.BertModel(transformers.BertConfig(**BERT_BASE)).eval()
    reference.save_pretrained(os.path.join(folder, "bert"))
    tensors = lambda batch: {name: torch.from_numpy(value) for name, value in batch.items()}  # noqa: E731

    def hf(batch):
        with torch.inference_mode():
            return reference(**tensors(batch)).last_hidden_state.numpy()

    return {"transformers": hf, **llmasos_runners("bert", folder, only, pretrained=os.path.join(folder, "bert"))}


def bench_bert(folder: str, only: set[str], batches: list[int], length: int, repeats: int) -> None:
    run = bert_runners(folder, only)
    rng = np.random.default_rng(0)
    print(f"\nBERT (bert-base size, random weights), sequence {length}: ms per batch (wall, median of {repeats}); "
          f"ratio vs transformers")
    print(f"{'runtime':26s} {'batch':>5s} {'ms':>9s} {'ratio':>7s} {'target':>7s} {'max |diff|':>11s}")
    for batch in batches:
        mask = np.ones((batch, length), np.int64)  # as a tokenizer gives it
        mask[0, length // 2:] = 0  # one padded sequence, so the mask is really used
        feed = {"input_ids": rng.integers(0, BERT_BASE["vocab_size"], (batch, length)), "attention_mask": mask,
                "token_type_ids": np.zeros((batch, length), np.int64)}
        print_against_reference(run, feed, repeats, "batch", str(batch))


def gpt2_runners(folder: str, only: set[str], new_tokens: int) -> dict[str, Callable]:
    import torch
    import transformers

    from llmasos import export, zoo

    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    reference.save_pretrained(os.path.join(folder, "gpt2"))

    def hf(ids):
        with torch.inference_mode():
            return reference.generate(torch.from_numpy(ids), max_new_tokens=new_tokens, do_sample=False,
                                      pad_token_id=reference.config.eos_token_id).numpy()

    out = {"transformers (cache)": hf}
    models = {framework: zoo.load("gpt2", framework, pretrained=os.path.join(folder, "gpt2"))
              for framework in ("torch", "tf") if framework in only}
    if "onnx" in only:
        models.setdefault("torch", zoo.load("gpt2", "torch", pretrained=os.path.join(folder, "gpt2")))
    for framework, model in models.items():
        if framework in only:
            out[f"llmasos {framework} (cache)"] = lambda ids, m=model: m.generate(ids, new_tokens)
            out[f"llmasos {framework} (no cache)"] = lambda ids, m=model: m.generate(ids, new_tokens, use_cache=False)
    if "onnx" in only:
        for label, source in (("cache", models["torch"].decoder()), ("no cache", models["torch"])):
            path = os.path.join(folder, f"gpt2-{label.replace(' ', '-')}.onnx")
            export.to_onnx(source, path)
            session = export.load(path, providers=["cpu"])
            out[f"onnxruntime cpu ({label})"] = lambda ids, s=session: models["torch"].generate(ids, new_tokens,
                                                                                                 session=s)
    return out


def bench_gpt2(folder: str, only: set[str], prompt: int, new_tokens: int, repeats: int) -> None:
    run = gpt2_runners(folder, only, new_tokens)
    ids = np.random.default_rng(0).integers(0, 50257, (1, prompt))
    want = run["transformers (cache)"](ids)
    seconds = measure(run, ids, repeats, time.perf_counter)
    print(f"\nGPT-2 small (random weights): greedy, prompt {prompt} tokens + {new_tokens} new, batch 1 "
          f"(wall, median of {repeats})")
    print(f"{'runtime':30s} {'tokens/s':>9s} {'same tokens':>12s}")
    for label, fn in run.items():
        print(f"{label:30s} {new_tokens / seconds[label]:9.1f} {str(np.array_equal(fn(ids), want)):>12s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert,gpt2", help="comma list: bert, gpt2")
    parser.add_argument("--batches", default="1,8", help="BERT batch sizes")
    parser.add_argument("--length", type=int, default=128, help="BERT sequence length")
    parser.add_argument("--prompt", type=int, default=16, help="GPT-2 prompt length")
    parser.add_argument("--new-tokens", type=int, default=32, help="GPT-2 tokens to generate")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="torch,tf,onnx", help="runtimes besides transformers: torch, tf, onnx")
    args = parser.parse_args()
    print(f"CPU: {describe()}", flush=True)
    only, models = set(args.only.split(",")), set(args.model.split(","))
    with tempfile.TemporaryDirectory() as folder:
        if "bert" in models:
            bench_bert(folder, only, [int(b) for b in args.batches.split(",")], args.length, args.repeats)
        if "gpt2" in models:
            bench_gpt2(folder, only, args.prompt, args.new_tokens, args.repeats)


if __name__ == "__main__":
    main()
