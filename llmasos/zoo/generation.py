"""Autoregressive generation in NumPy, the same for every runtime.

A runtime is a function from a list of input arrays to a list of output arrays: a compiled
model's ``predict`` (torch or TensorFlow) or an ONNX Runtime session (:func:`onnx_runner`). Two
ways to drive it:

* :class:`Cached` runs an incremental decoder, a model whose inputs are the new ids and the past
  keys/values of every layer and whose outputs are the last position's logits and the keys/values
  so far (see :func:`llmasos.zoo.gpt2.gpt2` with ``cache=True``): one position per step;
* :class:`Uncached` runs the plain model on the whole sequence every step.

Both give the same tokens; :func:`generate` picks them greedily or by sampling.

>>> import numpy as np
>>> logits = np.array([[0.0, 3.0, 1.0]])
>>> choose(logits, np.random.default_rng(0)).tolist()
[1]
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


class Uncached:
    """The whole sequence through the plain model (ids in, logits for every position out)."""

    def __init__(self, run: Runner) -> None:
        self.run = run
        self.ids = np.zeros((0, 0), np.int64)

    def start(self, ids: np.ndarray) -> np.ndarray:
        self.ids = ids
        return self.run([ids])[0][:, -1]

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        return self.start(np.concatenate([self.ids, tokens[:, None]], axis=1))


class Cached:
    """An incremental decoder: ``run([ids, *past]) -> [last logits, *present]``; the past starts
    empty (length 0) with ``widths`` features per cache tensor."""

    def __init__(self, run: Runner, widths: Sequence[int]) -> None:
        self.run, self.widths = run, list(widths)
        self.past: list[np.ndarray] = []

    def start(self, ids: np.ndarray) -> np.ndarray:
        self.past = [np.zeros((len(ids), 0, width), np.float32) for width in self.widths]
        return self.advance_ids(ids)

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        return self.advance_ids(tokens[:, None])

    def advance_ids(self, ids: np.ndarray) -> np.ndarray:
        logits, *self.past = self.run([ids, *self.past])
        return logits


def onnx_runner(session: Any) -> Runner:
    """An ONNX Runtime session as a runner: inputs and outputs in the file's order (an llmasos
    export keeps the spec's)."""
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def choose(logits: np.ndarray, rng: np.random.Generator, *, do_sample: bool = False, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """The next token of each row: the argmax, or a sample after temperature, top-k and top-p
    (nucleus) filtering, in that order (as transformers applies them)."""
    if not do_sample:
        return logits.argmax(axis=-1)
    scores = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = np.sort(scores, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    probabilities = _softmax(scores)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probabilities, axis=-1)
        ranked = np.take_along_axis(probabilities, order, axis=-1)
        # keep the smallest set of most likely tokens whose mass reaches top_p (at least one)
        drop = np.cumsum(ranked, axis=-1) - ranked >= top_p
        np.put_along_axis(probabilities, order, np.where(drop, 0.0, ranked), axis=-1)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
    draws = rng.random((len(probabilities), 1))
    return np.minimum((np.cumsum(probabilities, axis=-1) < draws).sum(axis=-1), probabilities.shape[-1] - 1)


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def generate(decoder: Cached | Uncached, ids: np.ndarray, max_new_tokens: int, *, eos_token_id: int | None = None,
             pad_token_id: int | None = None, suppress: Sequence[int] = (), do_sample: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None) -> np.ndarray:
    """``ids`` ``(batch, L)`` followed by up to ``max_new_tokens`` new ones. A row that produced
    ``eos_token_id`` is continued with ``pad_token_id`` (``eos_token_id`` when None); generation
    stops when every row has. Tokens in ``suppress`` are never chosen."""
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise DataError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    if temperature <= 0 or (top_k is not None and top_k < 1) or (top_p is not None and not 0 < top_p <= 1):
        raise DataError(f"sampling needs temperature > 0, top_k >= 1 and 0 < top_p <= 1; got temperature="
                        f"{temperature}, top_k={top_k}, top_p={top_p}")
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise DataError(f"ids must be a non-empty batch (batch, length), got shape {ids.shape}")
    rng = np.random.default_rng(seed)
    out, done = ids, np.zeros(len(ids), bool)
    for step in range(max_new_tokens):
        logits = decoder.start(ids) if step == 0 else decoder.advance(out[:, -1])
        if len(suppress):
            logits = logits.copy()
            logits[:, list(suppress)] = -np.inf
        tokens = choose(logits, rng, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
        if eos_token_id is not None:
            tokens = np.where(done, eos_token_id if pad_token_id is None else pad_token_id, tokens)
            done |= tokens == eos_token_id
        out = np.concatenate([out, tokens[:, None].astype(np.int64)], axis=1)
        if done.all():
            break
    return out
