"""Server-side tokenisation: a model whose file carries its tokenizer takes strings.

An exported zoo text model holds ``llmasos.tokenizer`` (tokenizer.json) and
``llmasos.text_inputs`` in its ONNX metadata (see :mod:`llmasos.export.metadata`). Such a model
also takes a BYTES input ``text`` of shape ``[-1]``, one string per row; the server tokenises it
(padding to the longest text, truncating to the model's maximum unless the metadata turns that
off) and runs the model's own inputs. The server's element limit counts tokens: texts whose rows
times padded length exceed it are refused before the padded inputs are made. A request sends
either ``text`` or those inputs::

    {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a good film", "dull"]}]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import DataError, ServeError
from ..export.metadata import TEXT_INPUTS, TOKENIZER
from ..texts import encode
from .tensors import DATATYPES, TensorSpec

TEXT = "text"


class TextInput:
    """The ``text`` input of one model version: its tokenizer and how it fills the model's inputs."""

    spec = TensorSpec(TEXT, "BYTES", (-1,))

    def __init__(self, tokenizer: Any, settings: Mapping[str, Any], inputs: Mapping[str, TensorSpec],
                 max_elements: int | None = None) -> None:
        names = settings.get("inputs") or []
        if TEXT in inputs or not names or any(name not in inputs for name in names) or len(names) != len(inputs):
            raise ServeError(f"{TEXT_INPUTS} names inputs {names}, but the model takes {list(inputs)}: "
                             f"texts cannot fill them", 500)
        self.tokenizer = tokenizer
        self.dtypes = {name: DATATYPES[inputs[name].datatype].numpy for name in names}
        self.pad_id, self.max_length = int(settings.get("pad_id", 0)), settings.get("max_length")
        self.max_elements = max_elements
        self.truncation = bool(settings.get("truncation", True)) and self.max_length is not None
        if self.truncation:  # the tokenizer's own truncation keeps special tokens such as [SEP]
            tokenizer.enable_truncation(int(self.max_length))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], inputs: Mapping[str, TensorSpec],
                      max_elements: int | None = None) -> TextInput | None:
        """The text input an ONNX file's ``metadata_props`` describe; None when they carry no tokenizer."""
        if TOKENIZER not in metadata:
            return None
        try:
            from tokenizers import Tokenizer  # only models with a tokenizer need the package
        except ImportError:
            raise ServeError("this model carries a tokenizer, which needs the tokenizers package: "
                             "pip install tokenizers", 500) from None
        try:
            tokenizer = Tokenizer.from_str(metadata[TOKENIZER])
            settings = json.loads(metadata.get(TEXT_INPUTS, "{}"))
        except Exception as exc:  # tokenizers raises plain Exceptions for a bad tokenizer.json
            raise ServeError(f"the file's {TOKENIZER} or {TEXT_INPUTS} cannot be read: {exc}", 500) from None
        return cls(tokenizer, settings if isinstance(settings, dict) else {}, inputs, max_elements)

    def feeds(self, texts: np.ndarray) -> dict[str, np.ndarray]:
        """The model's inputs for a 1-D array of strings (bytes must be UTF-8); a bad batch is a 400."""
        if texts.ndim != 1:
            raise ServeError(f"input {TEXT!r} has shape {list(texts.shape)}; it takes [-1], one text per row")
        try:
            strings = [t.decode() if isinstance(t, bytes) else t for t in texts.tolist()]
        except UnicodeDecodeError:
            raise ServeError(f"input {TEXT!r}: an element is not UTF-8 text") from None
        if not all(isinstance(t, str) for t in strings):
            raise ServeError(f"input {TEXT!r} takes strings")
        try:
            return encode(self.tokenizer, strings, self.dtypes, self.pad_id, self.max_length, self.max_elements)
        except DataError as exc:
            raise ServeError(f"input {TEXT!r}: {exc}") from None
