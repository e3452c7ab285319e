"""Complexity and quality scores as ``Dataset.map`` functions (SPEC sections 2, 3 and 5).

A scorer renders each turn into its prompt, runs the model once over a batch of prompts, reads the
logits of the six digit tokens "1".."6" at each prompt's last real token, and returns the expected
value of the softmax over those six logits, a score in [1, 6].

>>> from deita_hf.testing import byte_bpe_tokenizer, tiny_causal_lm
>>> tokenizer = byte_bpe_tokenizer()
>>> scorer = ComplexityScorer(tiny_causal_lm(tokenizer), tokenizer)
>>> out = scorer({"instruction": ["Say hi"], "output": ["Hi!"]})
>>> 1.0 <= out["complexity_scores"][0][0] <= 6.0
True
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .constants import (
    COMPLEXITY_COLUMN,
    COMPLEXITY_PROMPT,
    COMPLEXITY_SCORER_ID,
    QUALITY_COLUMN,
    QUALITY_PROMPT,
    QUALITY_SCORER_ID,
    SCORE_COLUMN,
    SCORE_DIGITS,
    SCORER_CONTEXT_LENGTH,
)
from .errors import ConfigError
from .formats import Turn, detect_format, read_rows, row_turns
from .modeling import Counted, LazyModel, MapCall, MapFunction
from .tokenization import PromptEncoder, check_tokenization, prompt_encoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

_SCORE_VALUES = torch.arange(1, len(SCORE_DIGITS) + 1, dtype=torch.float32)


def digit_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids of the tokens that spell "1".."6", each of which must be exactly one token."""
    ids = []
    for digit in SCORE_DIGITS:
        token_id = tokenizer.convert_tokens_to_ids(digit)
        if (
            token_id is None
            or token_id == tokenizer.unk_token_id
            or tokenizer.convert_ids_to_tokens(token_id) != digit
        ):
            raise ConfigError(
                f"the tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__!r} has no "
                f"single token for the digit {digit!r}; a Deita scorer must read its score from the tokens "
                f"{list(SCORE_DIGITS)}"
            )
        ids.append(token_id)
    return ids


def expected_score(digit_logits: torch.Tensor) -> torch.Tensor:
    """``sum_k k * softmax(z_1..z_6)_k`` over the last dimension: the Deita score formula."""
    probabilities = torch.softmax(digit_logits.float(), dim=-1)
    return probabilities @ _SCORE_VALUES.to(probabilities.device)


class TurnScorer(LazyModel, MapFunction):
    """Scores every turn of every row with one prompt template. See :class:`ComplexityScorer`."""

    auto_model_class = "AutoModelForCausalLM"
    template: str = ""
    column: str = ""
    default_model: str = ""
    _process_local = LazyModel._process_local + ("_digit_ids", "_prefix_ids", "_prefix_cache", "_encoder")

    def __init__(
        self,
        model: str | PreTrainedModel | None = None,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        *,
        format: str | None = None,
        batch_size: int = 64,
        max_batch_tokens: int | None = None,
        max_length: int | None = None,
        on_error: str = "raise",
        reuse_prefix: bool = True,
        tokenization: str = "auto",
        progress: bool = True,
        **load_kwargs: Any,
    ):
        super().__init__(model if model is not None else self.default_model, tokenizer, **load_kwargs)
        if on_error not in ("raise", "nan"):
            raise ConfigError(f"on_error must be 'raise' or 'nan', got {on_error!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.format = format
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}")
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_length = max_length
        self.on_error = on_error
        self.reuse_prefix = reuse_prefix
        self.tokenization = check_tokenization(tokenization)
        self.progress = progress

    # -- prompts -----------------------------------------------------------------------------------------
    @classmethod
    def render(cls, instruction: str, output: str = "") -> str:
        """The prompt of one turn, character-exact (SPEC section 2); also callable on the class.

        >>> "##Query: Say hi" in ComplexityScorer.render("Say hi")
        True
        """
        return cls.template.format(instruction=instruction, output=output)

    def _shortenable(self, instruction: str, output: str) -> list[tuple[str, str]]:
        """The fields that may be cut, in the order they are cut (SPEC section 3, long inputs)."""
        fields = [("output", output)] if "{output}" in self.template else []
        return fields + [("instruction", instruction)]

    def encode(self, instruction: str, output: str = "") -> tuple[list[int], bool]:
        """Token ids of the prompt of one turn, shortened to ``max_length`` if needed; and whether it was.

        With a tokenizer object passed in and ``max_length`` set, this needs no model (scorer training data).
        """
        ids, shortened = self.encode_turns([(instruction, output)])
        return ids[0], bool(shortened)

    @property
    def prompt_encoder(self) -> PromptEncoder:
        """What turns prompts into ids (:mod:`deita_hf.tokenization`): ``[bos] + sp.encode(prompt)`` with the
        checkpoint's SentencePiece model, as the reference stack did, or the tokenizer where there is none
        (``tokenization`` chooses). With a tokenizer object passed in, this loads no model."""
        if getattr(self, "_encoder", None) is None:
            if self._given_tokenizer is not None:  # a tokenizer object: its own vocab_file, nothing else
                tokenizer, name = self._given_tokenizer, None
            else:
                # self.tokenizer loads the model first: _source is then the folder a smoke name stands for.
                tokenizer, name = (
                    self.tokenizer,
                    self.tokenizer_name_or_path or self._source or self.model_name_or_path,
                )
            self._encoder = prompt_encoder(tokenizer, self.tokenization, name, self.revision)
        return self._encoder

    @property
    def encoding(self) -> str:
        """``"sentencepiece"`` or ``"tokenizer"``: how the prompts are encoded (see :attr:`prompt_encoder`)."""
        return self.prompt_encoder.name

    def encode_turns(self, turns: Sequence[Turn]) -> tuple[list[list[int]], int]:
        """Token ids of the prompts of many turns (one batched call), and how many were shortened."""
        encoder = self.prompt_encoder
        encoded = encoder([self.render(instruction, output) for instruction, output in turns])
        limit = self.effective_max_length
        shortened = 0
        for i, ids in enumerate(encoded):
            if len(ids) > limit:
                encoded[i] = self._shorten(encoder, *turns[i], len(ids), limit)
                shortened += 1
        return encoded, shortened

    def _shorten(self, encoder: PromptEncoder, instruction: str, output: str, length: int, limit: int) -> list[int]:
        """Cut text out of the middle of the response, then of the instruction, until the prompt fits."""
        texts = {"instruction": instruction, "output": output}
        ids: list[int] = []
        for name, _ in self._shortenable(instruction, output):
            while length > limit and texts[name]:
                text = texts[name]
                field_tokens = max(1, len(encoder.encode_pieces([text])[0]))
                cut = min(len(text), math.ceil((length - limit) * len(text) / field_tokens) + 1)
                keep = len(text) - cut
                # Keep the start and the end of the text; the template's tail stays the last tokens.
                texts[name] = text[: (keep + 1) // 2] + text[len(text) - keep // 2 :] if keep else ""
                ids = encoder([self.render(texts["instruction"], texts["output"])])[0]
                length = len(ids)
        if length > limit:
            raise ConfigError(
                f"max_length={limit} is shorter than the {self.column} prompt template itself ({length} tokens)"
            )
        return ids

    @property
    def effective_max_length(self) -> int:
        if self.max_length is not None:
            return self.max_length
        return int(getattr(self.model.config, "max_position_embeddings", None) or SCORER_CONTEXT_LENGTH)

    # -- the model -----------------------------------------------------------------------------------------
    def on_load(self) -> None:
        self._digit_ids = digit_token_ids(self._tokenizer)
        self._prefix_ids: list[int] = []
        self._prefix_cache = None
        if self.reuse_prefix:
            # The template's opening words are the same tokens in every prompt. Drop the last two tokens of
            # the encoded head: they may merge with the text that follows it.
            head = self.template.split("{", 1)[0]
            prefix = self.prompt_encoder([head])[0][:-2]
            if len(prefix) >= 4:
                self._prefix_ids = prefix
                with torch.inference_mode():
                    out = self._model.base_model(input_ids=torch.tensor([prefix], device=self._device), use_cache=True)
                self._prefix_cache = out.cache

    def _digit_head(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        head = self._model.get_output_embeddings()
        rows = torch.tensor(self._digit_ids, device=head.weight.device)
        bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
        return head.weight[rows], bias

    @torch.inference_mode()
    def _forward(self, id_lists: Sequence[Sequence[int]], prefix_len: int) -> torch.Tensor:
        """Scores of one padded batch; ``prefix_len`` tokens of each row are taken from the prefix cache."""
        device = self._device
        suffixes = [ids[prefix_len:] for ids in id_lists]
        width = max(len(s) for s in suffixes)
        pad = self._tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        # Right padding: a real token never attends to the padding after it, and the score is read at each
        # row's last real token, so padding changes nothing.
        input_ids = torch.full((len(suffixes), width), pad, dtype=torch.long)
        mask = torch.zeros((len(suffixes), width), dtype=torch.long)
        for i, s in enumerate(suffixes):
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        kwargs: dict[str, Any] = {}
        if prefix_len:
            cache = copy.deepcopy(self._prefix_cache)
            cache.batch_repeat_interleave(len(suffixes))
            kwargs["cache"] = cache
            kwargs["position_ids"] = torch.arange(prefix_len, prefix_len + width, device=device).expand(
                len(suffixes), -1
            )
            mask = torch.cat([torch.ones((len(suffixes), prefix_len), dtype=torch.long, device=device), mask], dim=1)
        hidden = self._model.base_model(input_ids=input_ids, attention_mask=mask, use_cache=bool(prefix_len), **kwargs)
        hidden = hidden.last_hidden_state
        last = mask[:, prefix_len:].sum(dim=1) - 1
        final = hidden[torch.arange(len(suffixes), device=device), last]
        # Only the six digit logits are needed: a (batch x hidden) by (hidden x 6) product.
        weight, bias = self._digit_head()
        logits = final @ weight.T
        if bias is not None:
            logits = logits + bias
        return expected_score(logits).cpu()

    @property
    def effective_max_batch_tokens(self) -> int:
        """Padded tokens per forward pass: ``max_batch_tokens``, else 1024 on CPU and 16384 on GPU."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return 16384 if self._device is not None and self._device.type == "cuda" else 1024

    def _batches(self, members: list[int], id_lists: Sequence[Sequence[int]], prefix_len: int) -> list[list[int]]:
        """Split rows sorted by length (longest first) into forward batches of at most ``batch_size`` rows and
        ``max_batch_tokens`` padded tokens: short prompts travel many to a batch, long ones few, and little
        compute goes to padding."""
        budget = self.effective_max_batch_tokens
        batches: list[list[int]] = []
        for i in members:
            if batches:
                batch = batches[-1]
                width = len(id_lists[batch[0]]) - prefix_len
                if len(batch) < self.batch_size and (len(batch) + 1) * width <= budget:
                    batch.append(i)
                    continue
            batches.append([i])
        return batches

    def score_ids(self, id_lists: Sequence[Sequence[int]]) -> list[float]:
        """Scores of encoded prompts, batched by length; returned in input order."""
        self.load()
        prefix = self._prefix_ids
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(id_lists):
            shares_prefix = bool(prefix) and len(ids) > len(prefix) and list(ids[: len(prefix)]) == prefix
            groups.setdefault(len(prefix) if shares_prefix else 0, []).append(i)
        scores = [math.nan] * len(id_lists)
        batches = []
        for prefix_len, members in groups.items():
            members.sort(key=lambda i: -len(id_lists[i]))
            batches += [(prefix_len, batch) for batch in self._batches(members, id_lists, prefix_len)]
        bar = tqdm(
            total=len(id_lists),
            desc=self.column,
            unit="prompt",
            leave=False,
            disable=not self.progress or len(batches) < 2,
        )
        for prefix_len, members in batches:
            values = self._forward([id_lists[i] for i in members], prefix_len)
            for i, value in zip(members, values.tolist()):
                scores[i] = value
            bar.update(len(members))
        bar.close()
        return scores

    def score_turns(self, turns: Sequence[Turn]) -> list[float]:
        """Scores of ``(instruction, response)`` turns, in order."""
        encoded, shortened = self.encode_turns(turns)
        if shortened:
            self.count("shortened_prompts", shortened)
            logger.warning(
                "%s: shortened %d prompt(s) longer than %d tokens", self.column, shortened, self.effective_max_length
            )
        scores = self.score_ids(encoded)
        bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
        if bad:
            raise FloatingPointError(f"{self.column}: the model gave a non-finite score for prompt(s) {bad}")
        return scores

    # -- Dataset.map -----------------------------------------------------------------------------------------
    def apply(self, batch: Mapping[str, Any], call: MapCall) -> dict[str, Any]:
        self.load(call.rank)
        scores = _score_rows(batch, call, self.format, self.on_error, [self], self.count)
        return {self.column: scores[0]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ComplexityScorer(TurnScorer):
    """Complexity of each user instruction, one score in [1, 6] per turn, as ``complexity_scores``.

    Args:
        model: Hub id, local path or loaded model (default: ``hkust-nlp/deita-complexity-scorer``).
        tokenizer: Hub id, local path or loaded tokenizer (default: the model's).
        format: the row format (``"messages"``, ``"sharegpt"``, ``"alpaca"``, ``"prompt_response"``);
            detected from the columns when ``None``.
        batch_size: most prompts per forward pass (prompts are sorted by length into batches).
        max_batch_tokens: most padded tokens per forward pass (default 1024 on CPU, 16384 on GPU): short
            prompts go many to a batch, long ones few.
        max_length: longest prompt in tokens (default: the model's context); longer prompts are shortened
            by cutting text out of the middle of the response, then of the instruction, and counted in
            ``stats["shortened_prompts"]``.
        on_error: ``"raise"`` (default) on a row that cannot be read, or ``"nan"`` to record NaN scores for
            it and count it in ``stats["unreadable_rows"]``.
        reuse_prefix: run the template's shared opening tokens once and reuse their cache (exact).
        tokenization: how prompts become ids: ``"auto"`` (default: ``[bos] + sp.encode(prompt)`` with the
            SentencePiece model when the tokenizer or the checkpoint has one, as the reference stack did;
            else the tokenizer), ``"sentencepiece"`` (an error without one) or ``"tokenizer"``.
        progress: show a progress bar over the forward passes.
        revision, dtype, device, trust_remote_code: see :class:`deita_hf.modeling.LazyModel`.

    Example::

        ds = ds.map(ComplexityScorer("hkust-nlp/deita-complexity-scorer"), batched=True)
    """

    template = COMPLEXITY_PROMPT
    column = COMPLEXITY_COLUMN
    default_model = COMPLEXITY_SCORER_ID


class QualityScorer(TurnScorer):
    """Quality of each (instruction, response) turn, one score in [1, 6] per turn, as ``quality_scores``.

    Same arguments as :class:`ComplexityScorer` (default model ``hkust-nlp/deita-quality-scorer``).

    Example::

        ds = ds.map(QualityScorer("hkust-nlp/deita-quality-scorer"), batched=True)
    """

    template = QUALITY_PROMPT
    column = QUALITY_COLUMN
    default_model = QUALITY_SCORER_ID


def _score_rows(
    batch: Mapping[str, Any],
    call: MapCall,
    format: str | None,
    on_error: str,
    scorers: Sequence[TurnScorer],
    count: Any,
) -> list[Any]:
    """Per scorer, the per-turn scores of each row of a batch (or of a single row)."""
    format = format or detect_format(list(batch))
    batched = call.batched
    turns_per_row: list[list[Turn] | None] = read_rows(
        batch, batched, call.indices, lambda row, position: row_turns(row, format, position), on_error, count
    )
    flat = [turn for turns in turns_per_row if turns for turn in turns]
    results = []
    for scorer in scorers:
        flat_scores = iter(scorer.score_turns(flat) if flat else [])
        per_row = [[next(flat_scores) for _ in turns] if turns else [math.nan] for turns in turns_per_row]
        results.append(per_row if batched else per_row[0])
    return results


class DeitaScorer(Counted, MapFunction):
    """Both scorers and the Deita score ``sum_t c_t * q_t`` (SPEC section 5), in one ``Dataset.map`` call.

    Adds ``complexity_scores``, ``quality_scores`` and ``deita_score``. Extra keyword arguments (e.g.
    ``batch_size``, ``max_length``, ``dtype``) go to both scorers; ``complexity_revision`` and
    ``quality_revision`` pin each scorer's Hub revision.

    Example::

        ds = ds.map(DeitaScorer(complexity_model="path/or/id", quality_model="path/or/id"), batched=True)
    """

    def __init__(
        self,
        complexity_model: str | PreTrainedModel = COMPLEXITY_SCORER_ID,
        quality_model: str | PreTrainedModel = QUALITY_SCORER_ID,
        *,
        complexity_tokenizer: str | PreTrainedTokenizerBase | None = None,
        quality_tokenizer: str | PreTrainedTokenizerBase | None = None,
        complexity_revision: str | None = None,
        quality_revision: str | None = None,
        format: str | None = None,
        on_error: str = "raise",
        **scorer_kwargs: Any,
    ):
        # The two scorers live in two repositories: each has its own revision (`revision=` sets both).
        revision = scorer_kwargs.pop("revision", None)
        common = dict(format=format, on_error=on_error, **scorer_kwargs)
        self.complexity = ComplexityScorer(
            complexity_model, complexity_tokenizer, revision=complexity_revision or revision, **common
        )
        self.quality = QualityScorer(quality_model, quality_tokenizer, revision=quality_revision or revision, **common)
        self.format = format
        self.on_error = on_error
        self._reset_counts()

    @property
    def stats(self) -> dict[str, int]:
        """Counts of this object and of its two scorers, in this process and its ``num_proc`` workers: unreadable
        rows, and shortened prompts per scorer (``complexity_scores.shortened_prompts``, ...)."""
        out = dict(super().stats)
        for scorer in (self.complexity, self.quality):
            out.update({f"{scorer.column}.{k}": v for k, v in scorer.stats.items()})
        return out

    def apply(self, batch: Mapping[str, Any], call: MapCall) -> dict[str, Any]:
        self.complexity.load(call.rank)
        self.quality.load(call.rank)
        complexity, quality = _score_rows(
            batch, call, self.format, self.on_error, [self.complexity, self.quality], self.count
        )
        if call.batched:
            total = [sum(c * q for c, q in zip(cs, qs)) for cs, qs in zip(complexity, quality)]
        else:
            total = sum(c * q for c, q in zip(complexity, quality))
        return {COMPLEXITY_COLUMN: complexity, QUALITY_COLUMN: quality, SCORE_COLUMN: total}

    def __repr__(self) -> str:
        return f"DeitaScorer(complexity_model={self.complexity.name!r}, quality_model={self.quality.name!r})"


#: Ready ``Dataset.map`` function with the two released scorers, loaded on first use:
#: ``ds.map(deita_score, batched=True)``.
deita_score = DeitaScorer()
