"""The NumPy generation helpers on their own: beam selection must pick exactly what a full stable
sort picks, ties and impossible (-inf) tokens included, at any width."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos.zoo.generation import _top, restrict


@pytest.mark.parametrize("seed", range(6))
def test_top_k_equals_a_stable_full_sort(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        width, k = int(rng.integers(1, 5000)), int(rng.integers(1, 9))
        if seed % 2:  # many ties
            scores = rng.integers(-4, 4, (3, width)).astype(np.float32)
        else:
            scores = rng.standard_normal((3, width)).astype(np.float32)
        if seed % 3 == 0:
            scores[:, ::3] = -np.inf
        np.testing.assert_array_equal(_top(scores, k), np.argsort(-scores, axis=-1, kind="stable")[:, :k])


def test_restrict_suppresses_or_forces():
    scores = np.zeros((2, 5), np.float32)
    assert np.isneginf(restrict(scores, [1, 3])[:, [1, 3]]).all() and (restrict(scores, [1, 3])[:, [0, 2, 4]] == 0).all()
    forced = restrict(scores, [1], forced_token=4)
    assert (forced[:, 4] == 0).all() and np.isneginf(forced[:, :4]).all()
