"""Autoregressive generation in NumPy, the same for every runtime.

A runtime is a function from a list of input arrays to a list of output arrays: a compiled
model's ``predict`` (torch or TensorFlow) or an ONNX Runtime session (:func:`onnx_runner`). Two
ways to drive it:

* :class:`Cached` runs an incremental decoder, a model whose inputs are the new ids and the past
  keys/values of every layer and whose outputs are the last position's logits and the keys/values
  so far (see :func:`llmasos.zoo.gpt2.gpt2` with ``cache=True``): one position per step;
* :class:`Uncached` runs the plain model on the whole sequence every step.

Both give the same tokens; :func:`generate` picks them greedily or by sampling, and
:func:`beam_search` (a :class:`Cached` decoder only) keeps the ``num_beams`` best continuations,
step for step as transformers' beam search does.

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


class RightPadded:
    """Prompts of different lengths as one batch through the plain model, each padded on the
    right: causal attention keeps a row's tokens from seeing the padding after them and its
    positions count from its own start, so every row gets the logits it would get alone. Each
    new token goes where the row's padding begins; the whole sequence runs every step (no cache).

    >>> run = lambda inputs: [np.eye(4)[inputs[0]]]        # a "model" that predicts its input again
    >>> rows = RightPadded(run, np.array([2, 1]))
    >>> rows.start(np.array([[1, 2], [3, 0]])).argmax(-1).tolist(), rows.advance(np.array([2, 1])).argmax(-1).tolist()
    ([2, 3], [2, 1])
    >>> rows.ids.tolist()
    [[1, 2, 2], [3, 1, 0]]
    """

    def __init__(self, run: Runner, lengths: np.ndarray) -> None:
        self.run, self.lengths = run, np.asarray(lengths, np.int64).copy()
        self.ids = np.zeros((len(self.lengths), 0), np.int64)

    def start(self, ids: np.ndarray) -> np.ndarray:
        self.ids = np.array(ids, np.int64)
        return self._last()

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        if self.ids.shape[1] <= self.lengths.max():
            self.ids = np.concatenate([self.ids, np.zeros((len(self.ids), 1), np.int64)], axis=1)
        self.ids[np.arange(len(self.ids)), self.lengths] = tokens
        self.lengths += 1
        return self._last()

    def _last(self) -> np.ndarray:
        logits = self.run([self.ids[:, :self.lengths.max()]])[0]
        return logits[np.arange(len(self.ids)), self.lengths - 1]


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

    def reorder(self, rows: np.ndarray) -> None:
        """Keep the cache rows ``rows`` (in that order): beams that survived a beam-search step."""
        self.past = [past[rows] for past in self.past]


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


def restrict(scores: np.ndarray, suppress: Sequence[int] = (), forced_token: int | None = None) -> np.ndarray:
    """Scores with the ``suppress`` tokens impossible, or every token but ``forced_token``
    (transformers' NoBadWords and ForcedEOS processors)."""
    if forced_token is not None:
        out = np.full_like(scores, -np.inf)
        out[:, forced_token] = 0.0
        return out
    if len(suppress):
        scores = scores.copy()
        scores[:, list(suppress)] = -np.inf
    return scores


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _check_length(max_new_tokens: Any) -> None:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise DataError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")


def generate(decoder: Cached | Uncached, ids: np.ndarray, max_new_tokens: int, *, eos_token_id: int | None = None,
             pad_token_id: int | None = None, suppress: Sequence[int] = (), forced_eos_token_id: int | None = None,
             do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None) -> np.ndarray:
    """``ids`` ``(batch, L)`` followed by up to ``max_new_tokens`` new ones. A row that produced
    ``eos_token_id`` is continued with ``pad_token_id`` (``eos_token_id`` when None); generation
    stops when every row has. Tokens in ``suppress`` are never chosen; the last step chooses
    ``forced_eos_token_id`` when given."""
    _check_length(max_new_tokens)
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
        logits = restrict(logits, suppress, forced_eos_token_id if step == max_new_tokens - 1 else None)
        tokens = choose(logits, rng, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
        if eos_token_id is not None:
            tokens = np.where(done, eos_token_id if pad_token_id is None else pad_token_id, tokens)
            done |= tokens == eos_token_id
        out = np.concatenate([out, tokens[:, None].astype(np.int64)], axis=1)
        if done.all():
            break
    return out


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[b, index[b, j]]`` for every row ``b``: per-row gathers of beams."""
    return np.take_along_axis(values, index.reshape(*index.shape, *[1] * (values.ndim - 2)), axis=1)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` largest scores, largest first (the lower index first among
    equals), for beams over a whole vocabulary, where sorting or partitioning every row would
    cost more than the model step: the k-th largest maximum of 64-wide chunks is a floor that
    at least k scores reach, so the top k are among the few scores at or above it."""
    rows, width = scores.shape
    if width <= 64 * k:
        return np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    whole = width - width % 64
    maxima = scores[:, :whole].reshape(rows, -1, 64).max(axis=-1)
    if whole < width:
        maxima = np.concatenate([maxima, scores[:, whole:].max(axis=-1, keepdims=True)], axis=1)
    floors = np.partition(maxima, -k, axis=-1)[:, -k]
    out = np.empty((rows, k), np.int64)
    for row, (values, floor) in enumerate(zip(scores, floors)):
        candidates = np.flatnonzero(values >= floor)
        out[row] = candidates[np.argsort(-values[candidates], kind="stable")[:k]]
    return out


def beam_search(decoder: Cached, ids: np.ndarray, max_new_tokens: int, num_beams: int, *,
                eos_token_id: int | None = None, pad_token_id: int | None = None, suppress: Sequence[int] = (),
                forced_eos_token_id: int | None = None, length_penalty: float = 1.0,
                early_stopping: bool | str = False, renormalize: bool = False) -> np.ndarray:
    """The best of ``num_beams`` continuations of each row of ``ids`` ``(batch, L)``, as
    transformers' beam search (its vectorised form, with the same length penalty and stopping
    heuristics) chooses it. ``decoder`` runs ``batch * num_beams`` rows, each row's beams
    together (its fixed inputs repeated ``num_beams`` times, row by row). Scores are
    log-probabilities in float32; ``renormalize`` takes the log-softmax again after the
    suppressed and forced tokens (``renormalize_logits``)."""
    _check_length(max_new_tokens)
    if not isinstance(num_beams, int) or isinstance(num_beams, bool) or num_beams < 1:
        raise DataError(f"num_beams must be a positive int, got {num_beams!r}")
    if early_stopping not in (True, False, "never"):
        raise DataError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    ids = np.asarray(ids, dtype=np.int64)
    batch, prompt = ids.shape
    beams, max_length = num_beams, prompt + max_new_tokens
    keep = max(2, 1 + (eos_token_id is not None)) * beams
    top_mask = np.arange(keep) < beams
    fill = pad_token_id or (eos_token_id if eos_token_id is not None else -1)
    running = np.full((batch, beams, max_length), fill, np.int64)
    running[:, :, :prompt] = ids[:, None, :]
    sequences = running.copy()
    running_scores = np.zeros((batch, beams), np.float32)
    running_scores[:, 1:] = -1e9
    scores = np.full((batch, beams), -1e9, np.float32)
    finished = np.zeros((batch, beams), bool)
    improvable = np.ones((batch, 1), bool)
    running_origin = np.full((batch, beams, max_new_tokens), -1, np.int64)  # the beam each token continued
    origin = running_origin.copy()
    logits = decoder.start(np.repeat(ids, beams, axis=0)) if max_new_tokens else None
    for length in range(prompt, max_length):
        log_probs = _log_softmax(logits.astype(np.float32))
        log_probs = restrict(log_probs, suppress, forced_eos_token_id if length == max_length - 1 else None)
        if renormalize:
            log_probs = _log_softmax(log_probs)
        vocab = log_probs.shape[-1]
        total = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(batch, -1)
        best = _top(total, keep)
        top_scores, parent, token = np.take_along_axis(total, best, axis=1), best // vocab, best % vocab
        top_sequences, top_origin = _take(running, parent), _take(running_origin, parent)
        top_sequences[:, :, length] = token
        top_origin[:, :, length - prompt] = parent + np.arange(batch)[:, None] * beams
        done = (token == eos_token_id) | (length + 1 >= max_length)
        # the best unfinished continuations run on
        alive = (top_scores + done * np.float32(-1e9)).astype(np.float32)
        chosen = _top(alive, beams)
        running, running_scores, running_origin = _take(top_sequences, chosen), _take(alive, chosen), \
            _take(top_origin, chosen)
        # finished ones among the best num_beams join the kept hypotheses if they score higher
        penalised = (top_scores / np.float32((length + 1 - prompt) ** length_penalty)).astype(np.float32)
        full = finished.all(axis=1, keepdims=True) & (early_stopping is True)
        just_done = done & top_mask[None, :]
        penalised = penalised + np.float32(-1e9) * (full | ~improvable | ~just_done)
        merged = np.concatenate([scores, penalised], axis=1)
        pick = _top(merged, beams)
        sequences = _take(np.concatenate([sequences, top_sequences], axis=1), pick)
        origin = _take(np.concatenate([origin, top_origin], axis=1), pick)
        finished = _take(np.concatenate([finished, just_done], axis=1), pick)
        scores = _take(merged, pick)
        decoder.reorder(running_origin[:, :, length - prompt].reshape(-1))
        steps = (max_length - prompt) if early_stopping == "never" and length_penalty > 0 else length + 1 - prompt
        best_running = running_scores[:, :1] / np.float32(steps ** length_penalty)
        worst_finished = np.where(finished, scores.min(axis=1, keepdims=True), np.float32(-1e9))
        improvable = improvable & (best_running > worst_finished).any(axis=-1, keepdims=True)
        if not improvable.any() or (finished.all() and early_stopping is True) or done.all():
            break
        logits = decoder.advance(running[:, :, length].reshape(-1))
    generated = int((origin[:, 0] >= 0).sum(axis=1).max()) if max_new_tokens else 0
    return sequences[:, 0, :prompt + generated]
