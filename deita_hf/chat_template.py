"""The Vicuna v1.1 chat template of the Deita models, as a Jinja template for ``apply_chat_template``.

It renders a conversation exactly as the Deita models were trained (FastChat's ``vicuna_v1.1``)::

    <s>SYSTEM USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>

where SYSTEM is :data:`deita_hf.constants.VICUNA_SYSTEM`, or the text of the conversation's system messages
(wherever they are, joined by newlines) when it has any. As in FastChat, assistant messages before the first user message are dropped and a message
with empty text renders as its bare role (``"ASSISTANT:"``); the text after BOS is the embedder's
:func:`deita_hf.embedding.vicuna_text`, which renders this template (the one definition of the format). The assistant text and its end-of-sequence token sit between ``{% generation %}`` markers, so
TRL's ``assistant_only_loss=True`` trains on exactly those tokens, as Deita's SFT did. With
``add_generation_prompt=True`` the text ends with ``"ASSISTANT:"``.

>>> from deita_hf.testing import byte_bpe_tokenizer
>>> tokenizer = set_vicuna_chat_template(byte_bpe_tokenizer())
>>> text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
>>> text[-19:]
'USER: Hi ASSISTANT:'
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .constants import VICUNA_ASSISTANT, VICUNA_SYSTEM, VICUNA_USER
from .errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def vicuna_chat_template(label_space_before_answer: bool = False) -> str:
    """The Vicuna v1.1 chat template; with ``label_space_before_answer``, the space between ``ASSISTANT:`` and the
    answer sits inside the generation markers, so that a token made of that space alone (SentencePiece's bare
    ``▁`` before an answer that starts with a digit or a newline) carries a label, as in the reference's SFT.
    The rendered text is the same either way."""
    # A JSON string literal is a valid Jinja string literal, so the system text is embedded verbatim.
    space_out, space_in = ("", " ") if label_space_before_answer else (" ", "")
    return (
        "{%- set systems = messages | selectattr('role', 'equalto', 'system') | map(attribute='content') | list -%}"
        "{%- if systems -%}"
        "{%- set system_message = systems | join(" + json.dumps("\n") + ") -%}"
        "{%- else -%}"
        "{%- set system_message = " + json.dumps(VICUNA_SYSTEM) + " -%}"
        "{%- endif -%}"
        "{%- set loop_messages = messages | rejectattr('role', 'equalto', 'system') | list -%}"
        "{%- set state = namespace(seen_user=false) -%}"
        "{{- bos_token + system_message + ' ' -}}"
        "{%- for message in loop_messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{%- set state.seen_user = true -%}"
        "{%- if message['content'] -%}"
        "{{- '" + VICUNA_USER + ": ' + message['content'] + ' ' -}}"
        "{%- else -%}"
        "{{- '" + VICUNA_USER + ":' -}}"
        "{%- endif -%}"
        "{%- elif message['role'] == 'assistant' -%}"
        # Like FastChat, assistant messages before the first user message are dropped, and an empty message
        # renders as its bare role.
        "{%- if state.seen_user -%}"
        "{%- if message['content'] -%}"
        "{{- '" + VICUNA_ASSISTANT + ":" + space_out + "' -}}"
        "{%- generation -%}"
        "{{- '" + space_in + "' + message['content'] + eos_token -}}"
        "{%- endgeneration -%}"
        "{%- else -%}"
        "{{- '" + VICUNA_ASSISTANT + ":' -}}"
        "{%- endif -%}"
        "{%- endif -%}"
        "{%- else -%}"
        "{{- raise_exception('the Vicuna v1.1 template takes system, user and assistant messages; got the role ' "
        "+ message['role']) -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}"
        "{{- '" + VICUNA_ASSISTANT + ":' -}}"
        "{%- endif -%}"
    )


VICUNA_CHAT_TEMPLATE = vicuna_chat_template()


def set_vicuna_chat_template(
    tokenizer: PreTrainedTokenizerBase, label_space_before_answer: bool = False
) -> PreTrainedTokenizerBase:
    """Set :data:`VICUNA_CHAT_TEMPLATE` on ``tokenizer`` (replacing its own) and return it; with
    ``label_space_before_answer``, the variant of :func:`vicuna_chat_template`.

    The template writes the tokenizer's ``bos_token`` and ``eos_token`` (``<s>`` and ``</s>`` for LLaMA and
    Mistral), so the tokenizer must have both.

    >>> from deita_hf.testing import byte_bpe_tokenizer
    >>> tokenizer = set_vicuna_chat_template(byte_bpe_tokenizer())
    >>> tokenizer.apply_chat_template(
    ...     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], tokenize=False
    ... ).endswith("USER: q ASSISTANT: a</s>")
    True
    """
    missing = [name for name in ("bos_token", "eos_token") if getattr(tokenizer, name, None) is None]
    if missing:
        raise ConfigError(
            f"the tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__!r} has no "
            f"{' and no '.join(missing)}; the Vicuna v1.1 template writes both. Set them on the tokenizer first."
        )
    tokenizer.chat_template = vicuna_chat_template(label_space_before_answer)
    return tokenizer


CHAT_TEMPLATE_CHOICES = ("auto", "vicuna", "model")


def load_chat_tokenizer(
    model_name_or_path: str,
    revision: str | None = "main",
    trust_remote_code: bool = False,
    chat_template: str = "vicuna",
) -> Any:
    """The tokenizer of ``model_name_or_path``, ready for chat: a pad token and a chat template.

    ``chat_template`` is ``"vicuna"`` (the Vicuna v1.1 template of the Deita models, set on the tokenizer),
    ``"model"`` (the tokenizer's own; an error if it has none) or ``"auto"`` (its own if it has one, else
    Vicuna v1.1). The pad token is ``<unk>`` where the tokenizer has none (as in Deita's training code), else
    EOS.

    A LLaMA/Mistral SentencePiece tokenizer (``LlamaTokenizer``) is loaded with ``legacy=True``, the behaviour
    of the tokenizer Deita trained with: each piece of text after a special token starts a new word, so the
    template's ``<s>A chat`` gives ``▁A`` (as the reference's BOS + text did) and ``</s>USER`` gives ``▁US``.
    transformers 5 loads these tokenizers non-legacy unless told, and does not save the setting; it is written
    to the tokenizer config so that the trained model's tokenizer reloads the same way.
    """
    from transformers import AutoTokenizer, LlamaTokenizer

    if chat_template not in CHAT_TEMPLATE_CHOICES:
        raise ConfigError(f"chat_template must be one of {CHAT_TEMPLATE_CHOICES}, got {chat_template!r}")
    from .modeling import model_source

    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    # A missing folder or an unreachable Hub fails here, fast, with what to do (before any data is read).
    with model_source(model_name_or_path, revision) as source:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        if isinstance(tokenizer, LlamaTokenizer) and not tokenizer.legacy:
            tokenizer = AutoTokenizer.from_pretrained(source, legacy=True, **kwargs)
    if isinstance(tokenizer, LlamaTokenizer):
        tokenizer.init_kwargs["legacy"] = True
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    if chat_template == "model" and not tokenizer.chat_template:
        raise ConfigError(
            f"the tokenizer of {model_name_or_path} has no chat template; use chat_template 'vicuna' (the Deita "
            "models' format) or 'auto'"
        )
    if chat_template == "vicuna" or (chat_template == "auto" and not tokenizer.chat_template):
        set_vicuna_chat_template(tokenizer)
    return tokenizer


# -- tokenizer ----------------------------------------------------------------------------------------------------
def load_tokenizer(
    model_name_or_path: str,
    revision: str = "main",
    trust_remote_code: bool = False,
    label_space_before_answer: bool = False,
) -> Any:
    """The tokenizer of ``model_name_or_path`` with the Vicuna v1.1 chat template of the Deita models and a pad
    token (``<unk>`` where the tokenizer has none, as in Deita's training code; else EOS).

    A LLaMA/Mistral SentencePiece tokenizer (``LlamaTokenizer``) is loaded with ``legacy=True``, the behaviour
    of the tokenizer Deita trained with: each piece of text after a special token starts a new word, so the
    template's ``<s>A chat`` gives ``▁A`` (as the reference's BOS + text did) and ``</s>USER`` gives ``▁US``.
    transformers 5 loads these tokenizers non-legacy unless told, and does not save the setting; it is written
    to the tokenizer config so that the trained model's tokenizer reloads the same way.

    ``label_space_before_answer`` sets the template variant that trains a bare space token before an answer
    (see :func:`deita_hf.chat_template.vicuna_chat_template`).
    """
    tokenizer = load_chat_tokenizer(model_name_or_path, revision, trust_remote_code, chat_template="vicuna")
    return set_vicuna_chat_template(tokenizer, label_space_before_answer) if label_space_before_answer else tokenizer
