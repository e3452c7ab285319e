"""Conversation embeddings for the diversity filter, as a ``Dataset.map`` function (SPEC section 6).

Two kinds of model are supported:

- ``"causal_lm"`` (the reference behaviour, e.g. ``mistralai/Mistral-7B-v0.1``): the conversation is
  rendered with the Vicuna v1.1 template (:func:`vicuna_text`), tokenized as the reference's legacy
  SentencePiece tokenizer did (BOS first, each literal ``</s>`` the EOS token, truncated to ``max_length``
  keeping the beginning), run through the base model without its LM head, and the final hidden state
  (after the last norm) at the last real token is the embedding;
- ``"sentence"`` (e.g. all-MiniLM-L6-v2): the message texts joined by newlines (:func:`sentence_text`),
  mean-pooled over the attention mask.

Embeddings are stored unnormalised as float32; the selection normalises them.

>>> from deita_hf.testing import byte_bpe_tokenizer, tiny_causal_lm
>>> tokenizer = byte_bpe_tokenizer()
>>> embedder = Embedder(tiny_causal_lm(tokenizer), tokenizer)
>>> out = embedder({"messages": [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]]})
>>> len(out["embedding"]), out["embedding"][0].shape, out["embedding"][0].dtype
(1, (32,), dtype('float32'))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .chat_template import VICUNA_CHAT_TEMPLATE
from .constants import (
    DEFAULT_EMBEDDING_MODEL_ID,
    EMBEDDING_COLUMN,
    EMBEDDING_MAX_LENGTH,
    VICUNA_EOS,
)
from .errors import ConfigError
from .formats import Message, detect_format, pair_turns, read_rows, row_messages
from .modeling import LazyModel, MapCall, MapFunction
from .tokenization import PromptEncoder, check_tokenization, model_file, prompt_encoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

EMBEDDER_KINDS = ("auto", "causal_lm", "sentence")


def _conversation(messages: Sequence[Mapping[str, str]]) -> tuple[str | None, list[Mapping[str, str]]]:
    """The system text of a conversation (``None`` without a system message) and its other messages, with
    the assistant messages before the first user message dropped (the reference skips a leading answer)."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    first_user = next((j for j, m in enumerate(rest) if m["role"] == "user"), len(rest))
    return ("\n".join(system) if system else None), rest[first_user:]


def vicuna_text(messages: Sequence[Mapping[str, str]], only_answer: bool = False) -> str:
    """The conversation rendered as the reference embedder's text: the Vicuna v1.1 template of FastChat.

    ``SYSTEM USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>``, where SYSTEM is the Vicuna system
    text, or the text of the conversation's system messages (joined by newlines) when it has any. As in
    FastChat, a message with empty text renders as its bare role (``"ASSISTANT:"``). Assistant messages
    before the first user message are dropped. With ``only_answer``, the assistant texts joined by
    newlines (the reference's ``only_answer`` text).

    >>> vicuna_text([{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}])[-40:]
    "'s questions. USER: q1 ASSISTANT: a1</s>"
    >>> vicuna_text([{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}], only_answer=True)
    'a1'
    """
    if only_answer:
        _, rest = _conversation(messages)
        return "\n".join(m["content"] for m in rest if m["role"] == "assistant")
    from transformers.utils.chat_template_utils import render_jinja_template

    # The chat template of the Deita models without its BOS: the format has one definition.
    rendered, _ = render_jinja_template(
        [list(messages)], chat_template=VICUNA_CHAT_TEMPLATE, bos_token="", eos_token=VICUNA_EOS
    )
    return rendered[0]


def sentence_text(messages: Sequence[Mapping[str, str]], only_answer: bool = False) -> str:
    """The text a sentence-embedding model embeds: the user and assistant texts joined by newlines, without
    a template or system text (a long shared preamble would dominate a short context); with
    ``only_answer``, only the assistant texts.

    >>> sentence_text([{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
    ...                {"role": "assistant", "content": "a"}])
    'q\\na'
    """
    _, rest = _conversation(messages)
    return "\n".join(m["content"] for m in rest if not only_answer or m["role"] == "assistant")


def _detect_kind(model: Any, name_or_path: str | None, revision: str | None, trust_remote_code: bool) -> str:
    """``"sentence"`` for a sentence-transformers folder or an encoder model, else ``"causal_lm"``."""
    if name_or_path and model_file(name_or_path, "modules.json", revision, "set kind='causal_lm' or 'sentence'"):
        return "sentence"
    if model is not None:
        config = getattr(model, "config", None)
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    architectures = list(getattr(config, "architectures", None) or []) + (
        [type(model).__name__] if model is not None else []
    )
    if any(name.endswith("ForCausalLM") for name in architectures):
        return "causal_lm"
    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "causal_lm"
    return "sentence"


class Embedder(LazyModel, MapFunction):
    """Embeds each conversation as one float32 vector, in an ``embedding`` column.

    Args:
        model: Hub id, local path or loaded model (default ``mistralai/Mistral-7B-v0.1``, as the reference).
            Loaded without its LM head (``AutoModel``); a loaded ``...ForCausalLM`` is used through its
            ``base_model``.
        tokenizer: Hub id, local path or loaded tokenizer (default: the model's).
        kind: ``"causal_lm"`` (Vicuna text, last-token hidden state), ``"sentence"`` (plain text, mean
            pooling) or ``"auto"`` (default): ``"sentence"`` for a sentence-transformers folder
            (``modules.json``) or an encoder model, else ``"causal_lm"``.
        format: the row format; detected from the columns when ``None``.
        batch_size: texts per forward pass (texts are sorted by length into batches).
        max_length: longest input in tokens (default 2048, the reference's); longer inputs keep their
            beginning and are counted in ``stats["truncated_texts"]``. A sentence model is also held to its
            own limit (``max_seq_length`` of its ``sentence_bert_config.json``, else its position count).
        only_answer: embed only the assistant texts, joined by newlines (the reference's option).
        tokenization: how a causal LM's text becomes ids: ``"auto"`` (default: with the SentencePiece model
            when the tokenizer or the model has one, else with the tokenizer), ``"sentencepiece"`` (an error
            without one) or ``"tokenizer"``. See :mod:`deita_hf.tokenization`.
        on_error: ``"raise"`` (default) on a row that cannot be read, or ``"nan"`` to record a NaN vector for
            it and count it in ``stats["unreadable_rows"]``. A row is readable by the scorers' rule (SPEC
            section 4): its texts are strings and it has a user turn.
        progress: show a progress bar over the texts.
        revision, dtype, device, trust_remote_code: see :class:`deita_hf.modeling.LazyModel` (bf16 on GPU,
            fp32 on CPU by default).

    A causal LM's text is tokenized as the reference's legacy SentencePiece tokenizer did: BOS, then each
    piece between special tokens on its own, with the SentencePiece model (its ``vocab_file``, or
    ``tokenizer.model`` beside the model or in its Hub repository) or the tokenizer, as ``tokenization``
    says; ``encoding`` says which was used. A Hub repository that cannot be asked is an error, never a
    silent switch.

    Example::

        ds = ds.map(Embedder("mistralai/Mistral-7B-v0.1"), batched=True)          # + embedding
        ds = ds.map(Embedder("sentence-transformers/all-MiniLM-L6-v2"), batched=True)
    """

    auto_model_class = "AutoModel"
    loads_base_of_checkpoint = True  # a causal LM's lm_head is left out, as intended
    _process_local = LazyModel._process_local + ("_kind", "_encoder", "_limit")

    def __init__(
        self,
        model: str | PreTrainedModel = DEFAULT_EMBEDDING_MODEL_ID,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        *,
        kind: str = "auto",
        format: str | None = None,
        batch_size: int = 8,
        max_length: int = EMBEDDING_MAX_LENGTH,
        only_answer: bool = False,
        tokenization: str = "auto",
        on_error: str = "raise",
        progress: bool = True,
        revision: str | None = None,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
    ):
        super().__init__(
            model, tokenizer, revision=revision, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
        if kind not in EMBEDDER_KINDS:
            raise ConfigError(f"kind must be one of {EMBEDDER_KINDS}, got {kind!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if max_length < 2:
            raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
        if on_error not in ("raise", "nan"):
            raise ConfigError(f"on_error must be 'raise' or 'nan', got {on_error!r}")
        self.kind = kind
        self.tokenization = check_tokenization(tokenization)
        self.on_error = on_error
        self.format = format
        self.batch_size = batch_size
        self.max_length = max_length
        self.only_answer = only_answer
        self.progress = progress

    # -- loading ---------------------------------------------------------------------------------------------
    def on_load(self) -> None:
        name = self._source or self.model_name_or_path
        self._kind = self.kind
        if self._kind == "auto":
            self._kind = _detect_kind(self._given_model, name, self.revision, self.trust_remote_code)
        tokenizer = self._tokenizer
        if self._kind == "causal_lm":
            # A tokenizer object passed in brings its own vocab_file; a named one, its folder or repository.
            where = None if self._given_tokenizer is not None else self.tokenizer_name_or_path or name
            self._encoder: PromptEncoder | None = prompt_encoder(tokenizer, self.tokenization, where, self.revision)
            self._limit = self.max_length
        else:
            self._encoder = None
            self._limit = min(self.max_length, self._sentence_model_limit())
        logger.info(
            "embedding with %s as %s, encoded with the %s (max %d tokens)",
            self.name,
            self._kind,
            self._encoder.name if self._encoder is not None else "tokenizer",
            self._limit,
        )

    def _sentence_model_limit(self) -> int:
        config_file = model_file(
            self._source or self.model_name_or_path,
            "sentence_bert_config.json",
            self.revision,
            "set max_length to the model's limit",
        )
        if config_file:
            limit = json.loads(Path(config_file).read_text()).get("max_seq_length")
            if limit:
                return int(limit)
        return int(getattr(self._model.config, "max_position_embeddings", None) or self.max_length)

    @property
    def resolved_kind(self) -> str:
        """``"causal_lm"`` or ``"sentence"``, after ``kind="auto"`` was resolved (loads the model)."""
        self.load()
        return self._kind

    @property
    def encoding(self) -> str | None:
        """How a causal LM's text is tokenized: ``"sentencepiece"`` or ``"tokenizer"`` (None for a sentence model)."""
        self.load()
        return self._encoder.name if self._encoder is not None else None

    # -- texts -------------------------------------------------------------------------------------------------
    def text(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The text embedded for one conversation: :func:`vicuna_text` or :func:`sentence_text`."""
        render = vicuna_text if self.resolved_kind == "causal_lm" else sentence_text
        return render(messages, self.only_answer)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated to the length limit keeping the beginning (counted in stats)."""
        self.load()
        if self._kind == "causal_lm":
            ids = self._encoder(texts)
            truncated = sum(len(x) > self._limit for x in ids)
            ids = [x[: self._limit] for x in ids]
        else:
            batch = self._tokenizer(list(texts), truncation=True, max_length=self._limit)
            ids = batch.input_ids
            if batch.encodings is not None:
                truncated = sum(bool(e.overflowing) for e in batch.encodings)
            else:  # a Python tokenizer does not say which texts it cut
                truncated = sum(len(x) > self._limit for x in self._tokenizer(list(texts)).input_ids)
        if truncated:
            self.count("truncated_texts", truncated)
            logger.info("truncated %d text(s) to %d tokens", truncated, self._limit)
        return ids

    # -- the model ---------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _forward(self, id_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        device = self._device
        width = max(len(ids) for ids in id_lists)
        pad = self._tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        # Sentence encoders have absolute positions: always pad them on the right.
        left = self._kind == "causal_lm" and getattr(self._tokenizer, "padding_side", "right") == "left"
        input_ids = torch.full((len(id_lists), width), pad, dtype=torch.long)
        mask = torch.zeros((len(id_lists), width), dtype=torch.long)
        for i, ids in enumerate(id_lists):
            span = slice(width - len(ids), width) if left else slice(0, len(ids))
            input_ids[i, span] = torch.tensor(ids, dtype=torch.long)
            mask[i, span] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        base = self._model.base_model
        if self._kind == "causal_lm":
            # Positions count real tokens only, so a left-padded text sees the positions it has alone.
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            hidden = base(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False
            ).last_hidden_state
            # The last real token: the last column for left padding, the row's length - 1 for right padding.
            last = width - 1 - mask.flip(dims=[1]).argmax(dim=1)
            return hidden[torch.arange(len(id_lists), device=device), last].float()
        hidden = base(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def embed_ids(self, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
        """Embeddings of encoded texts, batched by length, as an ``(n, d)`` float32 array in input order."""
        self.load()
        order = sorted(range(len(id_lists)), key=lambda i: -len(id_lists[i]))
        batches = [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        out: np.ndarray | None = None
        bar = tqdm(
            total=len(order), desc="embedding", unit="text", leave=False, disable=not self.progress or len(batches) < 2
        )
        for members in batches:
            vectors = self._forward([id_lists[i] for i in members]).cpu().numpy()
            if out is None:
                out = np.empty((len(id_lists), vectors.shape[1]), dtype=np.float32)
            out[members] = vectors
            bar.update(len(members))
        bar.close()
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of already rendered texts, an ``(n, d)`` float32 array in input order.

        >>> from deita_hf.testing import byte_bpe_tokenizer, tiny_causal_lm
        >>> tokenizer = byte_bpe_tokenizer()
        >>> Embedder(tiny_causal_lm(tokenizer), tokenizer, progress=False).embed_texts(["a", "b c"]).shape
        (2, 32)
        """
        return self.embed_ids(self.encode(texts))

    # -- Dataset.map -------------------------------------------------------------------------------------------
    def apply(self, batch: Mapping[str, Any], call: MapCall) -> dict[str, Any]:
        format = self.format or detect_format(list(batch))
        self.load(call.rank)

        def read(row: dict[str, Any], position: int | None) -> str:
            messages: list[Message] = row_messages(row, format, position)
            pair_turns(messages, position)  # the scorers' rule: a conversation needs a user turn
            return self.text(messages)

        texts = read_rows(batch, call.batched, call.indices, read, self.on_error, self.count)
        readable = [i for i, text in enumerate(texts) if text is not None]
        vectors = self.embed_texts([texts[i] for i in readable])
        if len(readable) < len(texts):
            width = vectors.shape[1] if len(readable) else self.hidden_size
            full = np.full((len(texts), width), np.nan, dtype=np.float32)
            full[readable] = vectors
            vectors = full
        return {EMBEDDING_COLUMN: list(vectors) if call.batched else vectors[0]}

    @property
    def hidden_size(self) -> int:
        """The length of an embedding."""
        return int(self.model.config.hidden_size)

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, kind={self.kind!r})"
