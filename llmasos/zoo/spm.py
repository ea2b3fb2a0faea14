"""Marian's tokenizer: SentencePiece models for source and target text and a ``vocab.json``
that gives the pieces their ids (not the SentencePiece model's own), as transformers'
``MarianTokenizer`` reads them. Needs the ``sentencepiece`` package (``llmasos[zoo]``).

It has the methods the zoo calls on a ``tokenizers.Tokenizer``, so either serves a model:
``encode_batch(texts)`` (each result has ``ids``, ``attention_mask``, ``type_ids``; ``</s>``
ends every text), ``decode(ids, skip_special_tokens=True)`` and ``enable_truncation(max_length)``
/ ``no_truncation()`` / ``truncation``. :meth:`SentencePieceVocabulary.for_targets` encodes
target texts with ``target.spm`` (``MarianTokenizer(text_target=...)``).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ZooError

FILES = ("source.spm", "target.spm", "vocab.json")
SPIECE_UNDERLINE = "\u2581"


@dataclass
class Encoding:
    """One text's ids, as ``tokenizers.Encoding`` names them."""

    ids: list[int]
    attention_mask: list[int] = field(default_factory=list)
    type_ids: list[int] = field(default_factory=list)


class SentencePieceVocabulary:
    """The tokenizer of a Marian folder: ``source.spm``, ``target.spm`` and ``vocab.json``, with
    the special tokens of ``tokenizer_config.json`` (``</s>``, ``<unk>``, ``<pad>`` by default).
    A leading language code such as ``>>de<<`` stays one token, as multilingual models expect."""

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        try:
            import sentencepiece
        except ImportError:
            raise ZooError(f"{folder}: reading a Marian tokenizer (source.spm) needs the sentencepiece package: "
                           f"pip install \"llmasos[zoo]\"") from None
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise ZooError(f"{folder}: a Marian tokenizer needs {', '.join(FILES)}; missing {', '.join(missing)}")
        self.source, self.target = (sentencepiece.SentencePieceProcessor(model_file=str(folder / name))
                                    for name in FILES[:2])
        self.vocabulary: dict[str, int] = json.loads((folder / "vocab.json").read_text())
        self.pieces = {i: piece for piece, i in self.vocabulary.items()}
        settings_path = folder / "tokenizer_config.json"
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        self.eos, self.unk, self.pad = (str(settings.get(key) or default) for key, default in
                                        (("eos_token", "</s>"), ("unk_token", "<unk>"), ("pad_token", "<pad>")))
        for token in (self.eos, self.unk, self.pad):
            if token not in self.vocabulary:
                raise ZooError(f"{folder / 'vocab.json'} lacks the special token {token!r}")
        self.special = {self.eos, self.unk, self.pad}
        self.truncation: dict | None = None  # as tokenizers.Tokenizer.truncation: {"max_length": n} or None

    def enable_truncation(self, max_length: int, **_: object) -> None:
        """Cut longer texts to ``max_length`` ids, ``</s>`` kept last (as ``MarianTokenizer`` truncates)."""
        self.truncation = {"max_length": int(max_length)}

    def no_truncation(self) -> None:
        self.truncation = None

    def for_targets(self) -> "SentencePieceVocabulary":
        """The same vocabulary encoding with ``target.spm``: target texts' ids, as
        ``MarianTokenizer(text_target=...)`` makes the labels."""
        side = copy.copy(self)
        side.source = self.target
        return side

    @staticmethod
    def in_folder(folder: str | os.PathLike) -> bool:
        return Path(folder).is_dir() and (Path(folder) / FILES[0]).is_file()

    def _ids(self, text: str) -> list[int]:
        code = []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[:end + 2]], text[end + 2:]
        pieces = code + self.source.encode(text, out_type=str)
        if self.truncation is not None:
            pieces = pieces[:max(self.truncation["max_length"] - 1, 0)]
        return [self.vocabulary.get(piece, self.vocabulary[self.unk]) for piece in pieces] + [self.vocabulary[self.eos]]

    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        out = []
        for text in texts:
            ids = self._ids(text)
            out.append(Encoding(ids, [1] * len(ids), [0] * len(ids)))
        return out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Target pieces back to text with the target SentencePiece model."""
        text, pending = "", []
        for piece in (self.pieces.get(int(i), self.unk) for i in ids):
            if piece not in self.special:
                pending.append(piece)
            elif not skip_special_tokens:
                text, pending = text + self.target.decode_pieces(pending) + piece + " ", []
        return (text + self.target.decode_pieces(pending)).replace(SPIECE_UNDERLINE, " ").strip()
