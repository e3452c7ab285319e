"""Chat models that write and rank the scorer training data: an OpenAI-compatible endpoint or a local model.

Both backends take a list of conversations (``{"role", "content"}`` messages) and return one
:class:`Reply` per conversation, in order. Every answer is stored in an on-disk cache keyed by
(model, messages, sampling parameters), so that a rerun of the same work sends no request twice.

- :class:`OpenAIChat` posts to ``{base_url}/chat/completions`` (OpenAI, vLLM, TGI, llama.cpp, ... ) with
  ``httpx2``, the HTTP client of ``huggingface_hub``, with several requests in flight, and retries timeouts,
  connection errors, 429 and 5xx answers with exponential back-off. A request that still fails is returned as a
  failed :class:`Reply` (and not cached), so one bad request does not stop a long run; a rerun asks again.
- :class:`TransformersChat` runs a local chat model with batched ``generate``.

>>> chat = OpenAIChat("gpt-4o-mini", cache_dir="outputs/generation-cache")  # doctest: +SKIP
>>> chat.generate([[{"role": "user", "content": "Say hi"}]])[0].text  # doctest: +SKIP
'Hi!'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from tqdm.auto import tqdm

from ..constants import DEFAULT_OPENAI_BASE_URL, RETRY_PROMPT
from ..errors import ConfigError, DeitaError
from ..formats import Message
from ..modeling import LazyModel

logger = logging.getLogger(__name__)

# HTTP answers that are worth asking again: request timeout, conflict, rate limit, server errors.
_RETRY_STATUS = {408, 409, 429}


class GenerationError(DeitaError, RuntimeError):
    """A request that no retry can fix (a wrong key, model or URL), or a bad backend setting."""


class MalformedReply(DeitaError, ValueError):
    """A reply that does not follow the format that the prompt asked for. The message says what is wrong."""


@dataclass
class Reply:
    """One answer: ``text`` (``None`` when the request failed), ``error`` (why it failed), ``finish_reason``
    (``"stop"``, ``"length"`` when cut at ``max_new_tokens``, ...) and whether it came from the cache."""

    text: str | None
    error: str | None = None
    finish_reason: str | None = None
    cached: bool = False


class GenerationCache:
    """Replies on disk, in one SQLite file, keyed by :func:`request_key`. Safe to share between threads.

    >>> cache = GenerationCache("/tmp/deita-hf-doc-cache.sqlite")
    >>> cache.put("k", Reply("hello", finish_reason="stop"))
    >>> cache.get("k").text
    'hello'
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        # Commit each reply without waiting for the disk (20 ms a reply otherwise): a crash of the program loses
        # nothing, a power cut may lose the cache, which a rerun then rebuilds. Works on network file systems.
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT, finish_reason TEXT)")
        self._db.commit()

    def get(self, key: str) -> Reply | None:
        with self._lock:
            row = self._db.execute("SELECT text, finish_reason FROM replies WHERE key = ?", (key,)).fetchone()
        return Reply(row[0], finish_reason=row[1], cached=True) if row else None

    def put(self, key: str, reply: Reply) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", (key, reply.text, reply.finish_reason))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


def request_key(model: str, messages: Sequence[Message], params: dict[str, Any]) -> str:
    """The cache key of one request: a SHA-256 of the model name, the messages and the sampling parameters."""
    blob = json.dumps(
        {"model": model, "messages": list(messages), "params": params}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ChatGenerator:
    """Base class of the backends: sampling defaults, the cache, and counts in ``stats``.

    Args:
        temperature: sampling temperature (0 means greedy).
        top_p: nucleus sampling.
        max_new_tokens: longest reply in tokens.
        cache_dir: folder of the on-disk cache (``generation_cache.sqlite``); ``None`` for no cache.
        progress: show a progress bar.
    """

    def __init__(
        self,
        *,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_new_tokens: int = 2048,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ):
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.cache = GenerationCache(Path(cache_dir) / "generation_cache.sqlite") if cache_dir is not None else None
        self.progress = progress
        self.stats: dict[str, int] = {"requests": 0, "cache_hits": 0, "retries": 0, "failures": 0}
        self._stats_lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to ``stats[key]`` (requests run in several threads)."""
        with self._stats_lock:
            self.stats[key] = self.stats.get(key, 0) + n

    @property
    def model_name(self) -> str:
        raise NotImplementedError

    def params(self, **overrides: Any) -> dict[str, Any]:
        """The sampling parameters of a request: the defaults, with ``overrides`` that are not ``None``."""
        params = {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens}
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            raise TypeError(f"unknown sampling parameter(s) {unknown}; expected some of {sorted(params)}")
        params.update({k: v for k, v in overrides.items() if v is not None})
        return params

    def generate(
        self, conversations: Sequence[Sequence[Message]], *, desc: str = "generate", **overrides: Any
    ) -> list[Reply]:
        """One reply per conversation, in order; cached replies are not asked again.

        ``overrides`` (``temperature``, ``top_p``, ``max_new_tokens``) replace the defaults for this call.
        """
        params = self.params(**overrides)
        replies: list[Reply | None] = [None] * len(conversations)
        keys = [request_key(self.model_name, messages, params) for messages in conversations]
        missing = []
        for i, key in enumerate(keys):
            cached = self.cache.get(key) if self.cache is not None else None
            if cached is not None:
                replies[i] = cached
                self.count("cache_hits")
            else:
                missing.append(i)
        if missing:
            bar = tqdm(total=len(missing), desc=desc, unit="request", disable=not self.progress)
            for i, reply in self._generate([conversations[i] for i in missing], params, missing):
                if reply.error is None and self.cache is not None:
                    self.cache.put(keys[i], reply)
                self.count("failures", reply.error is not None)
                replies[i] = reply
                bar.update(1)
            bar.close()
        return replies  # type: ignore[return-value]

    def _generate(self, conversations: list[Sequence[Message]], params: dict[str, Any], ids: list[int]):
        """Yield ``(id, Reply)`` for each conversation, in any order. Implemented by the backends."""
        raise NotImplementedError


class OpenAIChat(ChatGenerator):
    """Any OpenAI-compatible chat-completions endpoint, through one ``httpx2.Client`` (pooled connections).

    ``httpx2`` is the HTTP client that ``huggingface_hub`` is built on. Neither its ``InferenceClient`` nor its
    ``get_session()`` / ``http_backoff`` is used: both refuse every request, to a local server too, when
    ``HF_HUB_OFFLINE=1`` is set, and ``InferenceClient`` sends the saved Hugging Face token to any ``base_url``
    when no key is given. The retries are this class's own loop because ``http_backoff`` waits ``Retry-After``
    plus one second beyond ``max_backoff``, retries a fixed list of statuses, does not retry an answer that is
    not a chat completion, and cannot count the attempts.

    Args:
        model: the model name that the endpoint serves (e.g. ``"gpt-4o-mini"``).
        base_url: the API root; default ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
        api_key: the key; default ``$OPENAI_API_KEY``. When neither is set no ``Authorization`` header is sent
            (local servers); the saved Hugging Face token is never sent.
        timeout: seconds to wait for one answer.
        max_retries: how many times a request that timed out, lost its connection or got 408, 409, 429 or
            5xx is sent again.
        backoff: the first wait before a retry, in seconds; it doubles each retry (a ``Retry-After`` header
            is honoured), up to ``max_backoff``.
        concurrency: requests in flight at once.
        extra_body: more fields for the request body (e.g. ``{"seed": 0}``).
        temperature, top_p, max_new_tokens, cache_dir, progress: see :class:`ChatGenerator`.

    Example::

        chat = OpenAIChat("gpt-4o-mini", cache_dir="outputs/cache", concurrency=16)
        replies = chat.generate([[{"role": "user", "content": "Write a haiku about data."}]])
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        concurrency: int = 8,
        extra_body: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self.extra_body = dict(extra_body or {})
        self._client: httpx2.Client | None = None  # made on the first request: a run from the cache needs none
        self._client_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        # Never the key.
        return f"OpenAIChat(model={self.model!r}, base_url={self.base_url!r})"

    def params(self, **overrides: Any) -> dict[str, Any]:
        params = super().params(**overrides)
        if self.extra_body:
            params["extra_body"] = self.extra_body
        return params

    def _generate(self, conversations, params, ids):
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self.complete, messages, params): i for messages, i in zip(conversations, ids)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def complete(self, messages: Sequence[Message], params: dict[str, Any]) -> Reply:
        """Send one request, with retries; a failure after the last retry is returned as ``Reply(None, error)``."""
        body = {
            "model": self.model,
            "messages": list(messages),
            "temperature": params["temperature"],
            "top_p": params["top_p"],
            "max_tokens": params["max_new_tokens"],
            **params.get("extra_body", {}),
        }
        problem = ""
        for attempt in range(self.max_retries + 1):
            self.count("requests")
            self.count("retries", attempt > 0)
            retry_after = None
            try:
                response = self._post(body)
                if response.is_success:
                    return _parse_completion(response.content)
                detail = _error_detail(response)
                if response.status_code not in _RETRY_STATUS and response.status_code < 500:
                    raise GenerationError(_client_error_message(response.status_code, detail, self.url, self.model))
                problem = f"HTTP {response.status_code}: {detail}"
                retry_after = _retry_after(response)
            except httpx2.TimeoutException:
                problem = f"no answer within timeout={self.timeout} s"
            except httpx2.RequestError as error:
                problem = f"connection error: {error}"
            except MalformedReply as error:
                problem = str(error)
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                if retry_after is not None:
                    delay = min(self.max_backoff, max(delay, retry_after))
                logger.info("%s: %s; retry %d/%d in %.2f s", self.url, problem, attempt + 1, self.max_retries, delay)
                _sleep(delay)
        error = f"{self.url}: {problem} (gave up after {self.max_retries + 1} attempts)"
        logger.warning("%s", error)
        return Reply(None, error=error)

    def _post(self, body: dict[str, Any]) -> httpx2.Response:
        # Only the key given or $OPENAI_API_KEY: httpx2 adds no credentials of its own (no HF token, no netrc).
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        return self._http().post(self.url, json=body, headers=headers)

    def _http(self) -> httpx2.Client:
        """The client shared by the request threads; its pool holds ``concurrency`` connections."""
        with self._client_lock:
            if self._client is None:
                self._client = httpx2.Client(
                    timeout=self.timeout,
                    limits=httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                    # A redirect keeps the POST (307, 308); httpx2 drops the Authorization header if it changes host.
                    follow_redirects=True,
                )
            return self._client


def _parse_completion(raw: bytes) -> Reply:
    try:
        answer = json.loads(raw)
        choice = answer["choices"][0]
        text = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise MalformedReply(f"the endpoint did not answer with a chat completion: {raw[:200]!r}") from None
    if not isinstance(text, str):
        raise MalformedReply(f"the chat completion has no text content: {raw[:200]!r}")
    return Reply(text, finish_reason=choice.get("finish_reason"))


def _sleep(seconds: float) -> None:
    # One place to wait, so that tests can record the back-off delays.
    time.sleep(seconds)


def _error_detail(response: httpx2.Response) -> str:
    raw = response.content.decode("utf-8", "replace")
    try:
        message = json.loads(raw).get("error", {})
        return str(message.get("message", message) if isinstance(message, dict) else message)[:300]
    except (ValueError, AttributeError):
        return raw[:300] or response.reason_phrase


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _client_error_message(code: int, detail: str, url: str, model: str) -> str:
    hint = {
        401: "check the API key (api_key or $OPENAI_API_KEY)",
        403: "check that the API key may use this model",
        404: f"check base_url ({url}) and the model name {model!r}",
    }.get(code, "check the request settings (model, max_new_tokens, extra_body)")
    return f"{url} refused the request with HTTP {code}: {detail}. This is not retried: {hint}."


class _ChatModel(LazyModel):
    auto_model_class = "AutoModelForCausalLM"

    def on_load(self) -> None:
        if not getattr(self.tokenizer, "chat_template", None):
            raise GenerationError(
                f"the tokenizer of {self.name!r} has no chat template: use a chat (instruct) model, or set "
                "tokenizer.chat_template before passing it in"
            )

    @property
    def pad_token_id(self) -> int:
        """The id that pads prompts: the tokenizer's pad token, else its end-of-sequence token."""
        tokenizer = self.tokenizer
        return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _left_padded(prompts: Sequence[Sequence[int]], pad: int, device: Any) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` padded on the left: every row's new tokens start at the same position."""
    import torch

    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


class TransformersChat(ChatGenerator):
    """A local chat model run with batched ``generate`` (its chat template renders the conversations).

    Args:
        model: a Hub id, a local path, or a loaded causal LM (then pass ``tokenizer`` too).
        tokenizer: a Hub id, a local path or a loaded tokenizer with a chat template (default: the model's).
        batch_size: conversations per ``generate`` call (sorted by length).
        revision, dtype, device, trust_remote_code: see :class:`deita_hf.modeling.LazyModel`.
        temperature, top_p, max_new_tokens, cache_dir, progress: see :class:`ChatGenerator`.

    Example::

        chat = TransformersChat("Qwen/Qwen2.5-7B-Instruct", batch_size=16, cache_dir="outputs/cache")
        replies = chat.generate([[{"role": "user", "content": "Write a haiku about data."}]])
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 8,
        revision: str | None = None,
        dtype: Any = None,
        device: Any = None,
        trust_remote_code: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.lm = _ChatModel(
            model, tokenizer, revision=revision, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
        self.batch_size = batch_size

    @property
    def model_name(self) -> str:
        return self.lm.name

    def __repr__(self) -> str:
        return f"TransformersChat({self.model_name!r})"

    def _generate(self, conversations, params, ids):
        import torch

        model, tokenizer = self.lm.model, self.lm.tokenizer
        prompts = [
            tokenizer(
                tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
            ).input_ids
            for messages in conversations
        ]
        order = sorted(range(len(prompts)), key=lambda j: -len(prompts[j]))
        sampling: dict[str, Any] = {"do_sample": params["temperature"] > 0}
        if sampling["do_sample"]:
            sampling.update(temperature=params["temperature"], top_p=params["top_p"])
        else:
            sampling.update(temperature=None, top_p=None, top_k=None)
        for start in range(0, len(order), self.batch_size):
            members = order[start : start + self.batch_size]
            batch = _left_padded([prompts[j] for j in members], self.lm.pad_token_id, model.device)
            self.count("requests", len(members))
            with torch.inference_mode():
                out = model.generate(
                    **batch,
                    max_new_tokens=params["max_new_tokens"],
                    pad_token_id=self.lm.pad_token_id,
                    **sampling,
                )
            width = batch["input_ids"].shape[1]
            for row, j in enumerate(members):
                new = out[row, width:].tolist()
                stopped = any(t in _eos_ids(model, tokenizer) for t in new)
                text = tokenizer.decode(new, skip_special_tokens=True)
                yield ids[j], Reply(text, finish_reason="stop" if stopped else "length")


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos = eos if isinstance(eos, (list, tuple)) else [eos]
    return {t for t in [*eos, tokenizer.eos_token_id] if t is not None}


@dataclass
class Checked:
    """The outcome of a request whose reply must follow a format: the parsed ``value``, or the ``problem``
    that made it fail (a request failure, or a reply still malformed after the retries); every raw reply."""

    value: Any = None
    problem: str | None = None
    replies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def generate_checked(
    generator: ChatGenerator,
    conversations: Sequence[Sequence[Message]],
    parse: Callable[[Reply, int], Any],
    *,
    retries: int = 2,
    desc: str = "generate",
    **overrides: Any,
) -> list[Checked]:
    """Ask, parse each reply with ``parse(reply, index)``, and ask again where it raised :class:`MalformedReply`.

    A retry continues the conversation: the malformed reply, then a message that says what was wrong
    (:data:`deita_hf.constants.RETRY_PROMPT`). After ``retries`` retries the last problem is kept, never a
    guess. Retries are cached like any request, so a rerun replays them without asking.
    """
    outcomes = [Checked() for _ in conversations]
    current = {i: list(messages) for i, messages in enumerate(conversations)}
    for attempt in range(retries + 1):
        if not current:
            break
        todo = sorted(current)
        label = desc if attempt == 0 else f"{desc} (retry {attempt})"
        replies = generator.generate([current[i] for i in todo], desc=label, **overrides)
        following = {}
        for i, reply in zip(todo, replies):
            outcome = outcomes[i]
            if reply.text is None:
                outcome.problem = f"request failed: {reply.error}"
                continue
            outcome.replies.append(reply.text)
            try:
                outcome.value, outcome.problem = parse(reply, i), None
            except MalformedReply as error:
                outcome.problem = f"malformed reply: {error}"
                following[i] = current[i] + [
                    {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": RETRY_PROMPT.format(problem=error)},
                ]
        current = following
    return outcomes
