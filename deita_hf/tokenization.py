"""Token ids as the reference stack made them, shared by the scorers, the embedder and scorer training.

The released Deita scorers and the LLaMA / Mistral base models ship a SentencePiece model
(``tokenizer.model``). The reference (transformers 4.35) encoded text with it exactly as SentencePiece
does. transformers 5 converts the same file into a ``tokenizers`` pipeline that splits runs of spaces
before a word differently (``concise:    "Many`` gives ``▁▁▁▁`` ``"`` where SentencePiece gives ``▁▁▁``
``▁"``), and no loading option restores the old ids. So where a SentencePiece model is found, deita-hf
encodes with the ``sentencepiece`` library itself:

    ids = [bos] + sp.encode(text)

for a text without special-token strings; a text that contains one (``</s>`` in the embedder's Vicuna
text) is split there, the special token becomes its id, and each piece in between is encoded on its own,
as the reference's legacy tokenizer did (``</s>USER:`` keeps ``▁USER``).

The choice is explicit (``tokenization="auto" | "sentencepiece" | "tokenizer"``) and never falls back
silently: ``"sentencepiece"`` without a SentencePiece model is an error, and so is a model whose ids
disagree with the tokenizer's, or a Hub repository whose files cannot be listed.

>>> from deita_hf.testing import byte_bpe_tokenizer
>>> encoder = PromptEncoder(byte_bpe_tokenizer())
>>> encoder.name, encoder(["hi</s>"])[0][0] == encoder.tokenizer.bos_token_id
('tokenizer', True)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError, MissingFileError

logger = logging.getLogger(__name__)

#: The values of the ``tokenization`` option of the scorers and the embedder.
TOKENIZATIONS = ("auto", "sentencepiece", "tokenizer")
SENTENCEPIECE_FILE = "tokenizer.model"


def check_tokenization(tokenization: str) -> str:
    if tokenization not in TOKENIZATIONS:
        raise ConfigError(f"tokenization must be one of {TOKENIZATIONS}, got {tokenization!r}")
    return tokenization


def hub_file(repo_id: str, filename: str, revision: str | None, hint: str = "") -> str | None:
    """``filename`` of a Hub repository, from the cache or the Hub; None when the repository has no such file.

    Any other failure (offline without a cached answer, no access, no such repository) is an error: the
    caller must not guess whether the file exists.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from huggingface_hub.file_download import _CACHED_NO_EXIST

    cached = try_to_load_from_cache(repo_id, filename, revision=revision)
    if cached is _CACHED_NO_EXIST:
        return None
    if isinstance(cached, str):
        return cached
    try:
        return hf_hub_download(repo_id, filename, revision=revision)
    except RemoteEntryNotFoundError:
        return None
    except Exception as error:
        raise OSError(
            f"cannot tell whether {repo_id!r} (revision {revision!r}) has a {filename}: {error}. Connect to the "
            f"Hub or use a local copy of the model{'; or ' + hint if hint else ''}."
        ) from error


def model_file(name_or_path: str | None, filename: str, revision: str | None, hint: str = "") -> str | None:
    """``filename`` of a local model folder or a Hub repository; None when it has no such file. A Hub
    repository that cannot be asked is an error (``hint`` says what to set instead): nothing is guessed."""
    if not name_or_path:
        return None
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        return path if os.path.isfile(path) else None
    if os.path.exists(name_or_path):  # a single file: no folder to look in
        return None
    return hub_file(name_or_path, filename, revision, hint)


def sentencepiece_model_file(tokenizer: Any, name_or_path: str | None, revision: str | None) -> str | None:
    """The SentencePiece model of a tokenizer: its ``vocab_file`` when that is a ``.model`` file, else
    ``tokenizer.model`` in the local folder or Hub repository ``name_or_path``; None where there is none."""
    vocab_file = getattr(tokenizer, "vocab_file", None)
    if vocab_file and str(vocab_file).endswith(".model") and os.path.isfile(vocab_file):
        return str(vocab_file)
    return model_file(name_or_path, SENTENCEPIECE_FILE, revision, "say how to tokenize with tokenization='tokenizer'")


class PromptEncoder:
    """Token ids of texts as the reference's tokenizer made them: BOS (where the tokenizer adds one), then
    the text, split at special-token strings, each piece encoded on its own.

    Args:
        tokenizer: the model's ``transformers`` tokenizer (special tokens, BOS, and the ids without a
            SentencePiece model).
        sentencepiece_file: a SentencePiece model; when given, the pieces are encoded with it (the ids the
            reference had), and it must agree with ``tokenizer`` on BOS, EOS and a probe text.
    """

    def __init__(self, tokenizer: Any, sentencepiece_file: str | None = None):
        self.tokenizer = tokenizer
        specials = {}
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        for token in [*tokenizer.all_special_tokens, *(str(t) for t in added.values())]:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token:
                specials[str(token)] = token_id
        self.special_ids = specials
        pattern = "|".join(re.escape(token) for token in sorted(specials, key=len, reverse=True))
        self.splitter = re.compile(f"({pattern})") if pattern else None
        probe = tokenizer("a").input_ids
        self.prefix = (
            [tokenizer.bos_token_id]
            if tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
            else []
        )
        self.sentencepiece_file = str(sentencepiece_file) if sentencepiece_file is not None else None
        self.sentencepiece = self._load_sentencepiece(self.sentencepiece_file) if sentencepiece_file else None

    def _load_sentencepiece(self, path: str) -> Any:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=path)
        tokenizer = self.tokenizer
        probe = "Hello world, 12 apples."
        if not (
            processor.bos_id() == tokenizer.bos_token_id
            and processor.eos_id() == tokenizer.eos_token_id
            and processor.encode(probe) == tokenizer(probe, add_special_tokens=False).input_ids
        ):
            raise ConfigError(
                f"the SentencePiece model {path} does not give the tokenizer's ids (BOS, EOS or the ids of "
                f"{probe!r} differ); pass tokenization='tokenizer' to encode with the tokenizer instead"
            )
        return processor

    @property
    def name(self) -> str:
        """``"sentencepiece"`` or ``"tokenizer"``: what encodes the text between special tokens."""
        return "sentencepiece" if self.sentencepiece is not None else "tokenizer"

    def encode_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of plain texts (no special-token splitting, no BOS), one list per text."""
        texts = list(texts)
        if not texts:
            return []
        if self.sentencepiece is not None:
            return self.sentencepiece.encode(texts)
        return self.tokenizer(texts, add_special_tokens=False).input_ids

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        pieces: list[list[str | int]] = []
        for text in texts:
            parts = self.splitter.split(text) if self.splitter else [text]
            # re.split with a group alternates text, special token, text, ...
            pieces.append([self.special_ids[p] if j % 2 else p for j, p in enumerate(parts) if j % 2 or p])
        encoded = iter(self.encode_pieces([p for parts in pieces for p in parts if isinstance(p, str)]))
        out = []
        for parts in pieces:
            ids = list(self.prefix)
            for p in parts:
                ids.extend([p] if isinstance(p, int) else next(encoded))
            out.append(ids)
        return out


def resolve_tokenization(name_or_path: str, revision: str | None, tokenization: str) -> str:
    """``"sentencepiece"`` or ``"tokenizer"``: what ``tokenization`` means for the model folder or Hub repository
    ``name_or_path``; ``"auto"`` is SentencePiece where it has a ``tokenizer.model``. A run records this value
    and passes it on, so that every process and every resumed run encodes the same way."""
    check_tokenization(tokenization)
    if tokenization == "tokenizer":
        return tokenization
    found = sentencepiece_model_file(None, name_or_path, revision) is not None
    if tokenization == "sentencepiece" and not found:
        raise MissingFileError(_no_sentencepiece_model(name_or_path))
    return "sentencepiece" if found else "tokenizer"


def _no_sentencepiece_model(name_or_path: str | None) -> str:
    return (
        f"tokenization='sentencepiece' but no SentencePiece model was found: the tokenizer has no .model "
        f"vocab_file and {name_or_path or 'the model'} has no {SENTENCEPIECE_FILE}; use tokenization='tokenizer' "
        "or a model folder that has one"
    )


def prompt_encoder(
    tokenizer: Any, tokenization: str, name_or_path: str | None = None, revision: str | None = None
) -> PromptEncoder:
    """The encoder that ``tokenization`` asks for: with ``"auto"``, SentencePiece when the tokenizer or the
    model folder / repository ``name_or_path`` has a SentencePiece model, else the tokenizer;
    ``"sentencepiece"`` requires one (an error names where it was looked for)."""
    check_tokenization(tokenization)
    if tokenization == "tokenizer":
        return PromptEncoder(tokenizer)
    path = sentencepiece_model_file(tokenizer, name_or_path, revision)
    if path is None and tokenization == "sentencepiece":
        raise MissingFileError(_no_sentencepiece_model(name_or_path))
    return PromptEncoder(tokenizer, path)
