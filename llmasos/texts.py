"""Texts to a model's token inputs with a ``tokenizers.Tokenizer``: shared by the zoo's text
models (:meth:`llmasos.zoo.text.TextModel.encode`) and the server, so both feed a model alike.

>>> from tokenizers import Tokenizer, models, pre_tokenizers
>>> tokenizer = Tokenizer(models.WordLevel({"[PAD]": 0, "a": 1, "good": 2, "film": 3}, unk_token="[PAD]"))
>>> tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
>>> batch = encode(tokenizer, ["a good film", "film"], {"input_ids": "int64", "attention_mask": "int64"})
>>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
([[1, 2, 3], [3, 0, 0]], [[1, 1, 1], [1, 0, 0]])

No framework is imported here, nor ``tokenizers`` (the caller hands over its tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import DataError

# input name -> the ``tokenizers.Encoding`` attribute that fills it
COLUMNS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def encode(tokenizer: Any, texts: Sequence[str], dtypes: Mapping[str, Any], pad_id: int = 0,
           max_length: int | None = None, max_elements: int | None = None) -> dict[str, np.ndarray]:
    """``texts`` as the inputs named in ``dtypes`` (each one of :data:`COLUMNS`), padded to the
    longest text with ``pad_id`` (ids) or 0 (mask, types).

    Raises :class:`~llmasos.errors.DataError` for no texts, a text of no tokens, one longer than
    ``max_length`` tokens (truncation, if wanted, is the tokenizer's: ``enable_truncation``), or
    more than ``max_elements`` tokens per input once padded (rows x longest), before padding.
    """
    unknown = [name for name in dtypes if name not in COLUMNS]
    if unknown:
        raise DataError(f"inputs {unknown} cannot be made from texts; only {list(COLUMNS)}")
    if not texts:
        raise DataError("no texts to encode")
    encodings = tokenizer.encode_batch(list(texts))
    lengths = [len(e.ids) for e in encodings]
    if min(lengths) == 0:
        raise DataError(f"text {lengths.index(0)} has no tokens")
    if max_length is not None and max(lengths) > max_length:
        longest = int(np.argmax(lengths))
        raise DataError(f"text {longest} has {lengths[longest]} tokens; the model takes at most {max_length}")
    length = max(lengths)
    if max_elements is not None and len(lengths) * length > max_elements:
        raise DataError(f"{len(lengths)} texts padded to {length} tokens make {len(lengths) * length:,} tokens "
                        f"per input; the limit is {max_elements:,} (max_tensor_elements)")
    out = {}
    for name, dtype in dtypes.items():
        attribute, pad = COLUMNS[name], pad_id if name == "input_ids" else 0
        out[name] = np.array([getattr(e, attribute) + [pad] * (length - len(e.ids)) for e in encodings], dtype=dtype)
    return out
