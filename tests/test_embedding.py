"""The embedder: Vicuna text, legacy token ids, last-token and mean-pooled vectors (SPEC section 6)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher

from deita_hf.constants import VICUNA_SYSTEM
from deita_hf.embedding import Embedder, sentence_text, vicuna_text
from deita_hf.errors import ConfigError
from deita_hf.formats import RowError

CONVERSATION = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "2+2 equals 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6."},
]
# The text above as the reference's legacy SentencePiece Mistral-7B-v0.1 tokenizer encoded it: BOS, each
# "</s>" the EOS id 2, and "USER" after it with its word-start piece ("▁US" = 2223), not "USER" (11123).
PINNED_IDS = [
    1, 330, 10706, 1444, 264, 13903, 2188, 304, 396, 18278, 10895, 13892, 28723, 415, 13892, 5212, 10865, 28725,
    10537, 28725, 304, 27057, 11194, 298, 272, 2188, 28742, 28713, 4224, 28723, 2223, 725, 28747, 1824, 349, 28705,
    28750, 28806, 28750, 28804, 8602, 8048, 12738, 28747, 28705, 28750, 28806, 28750, 21588, 28705, 28781, 28723, 2,
    2223, 725, 28747, 1015, 28705, 28770, 28806, 28770, 28804, 8602, 8048, 12738, 28747, 28705, 28784, 28723, 2,
]  # fmt: skip
# Runs of spaces and a space after "</s>": SentencePiece's own segmentation ("▁▁▁" + "▁return", "▁" + "▁US").
SPACES_TEXT = "USER: def f():\n    return  1 ASSISTANT:  ok</s> USER: x"
SPACES_IDS = [1, 2223, 725, 28747, 801, 285, 5888, 13, 2287, 604, 259, 28740, 8602, 8048, 12738, 28747, 28705, 3614, 2, 28705, 2223, 725, 28747, 1318]  # fmt: skip


def rows(*conversations):
    return {"messages": [list(c) for c in conversations]}


# -- the Vicuna text -----------------------------------------------------------------------------------------
def test_vicuna_text_of_a_multi_turn_conversation_is_character_exact():
    expected = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: What is 2+2? ASSISTANT: 2+2 equals 4.</s>"
        "USER: And 3+3? ASSISTANT: 6.</s>"
    )
    assert vicuna_text(CONVERSATION) == expected


def test_vicuna_text_system_message_replaces_the_default_system_text():
    text = vicuna_text([{"role": "system", "content": "Be brief."}, *CONVERSATION[:2]])
    assert text == "Be brief. USER: What is 2+2? ASSISTANT: 2+2 equals 4.</s>"


def test_vicuna_text_renders_an_empty_message_as_its_bare_role_like_fastchat():
    assert (
        vicuna_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}])
        == VICUNA_SYSTEM + " USER: q ASSISTANT:"
    )


def test_vicuna_text_drops_assistant_messages_before_the_first_user_message():
    text = vicuna_text([{"role": "assistant", "content": "Hello!"}, *CONVERSATION[:2]])
    assert text == vicuna_text(CONVERSATION[:2])


def test_only_answer_text_is_the_answers_joined_by_newlines():
    assert vicuna_text(CONVERSATION, only_answer=True) == "2+2 equals 4.\n6."


def test_sentence_text_is_the_messages_without_template_or_system_text():
    messages = [{"role": "system", "content": "S"}, *CONVERSATION]
    assert sentence_text(messages) == "What is 2+2?\n2+2 equals 4.\nAnd 3+3?\n6."
    assert sentence_text(messages, only_answer=True) == "2+2 equals 4.\n6."


# -- token ids -----------------------------------------------------------------------------------------------
def test_vicuna_token_ids_are_pinned_with_the_real_mistral_tokenizer(tiny_mistral, mistral_tokenizer):
    embedder = Embedder(tiny_mistral, mistral_tokenizer, progress=False)
    assert embedder.encoding == "sentencepiece"
    assert embedder.encode([vicuna_text(CONVERSATION)]) == [PINNED_IDS]


def test_non_legacy_tokenizer_from_a_saved_config_gives_the_pinned_ids(tiny_mistral, mistral_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    mistral_tokenizer.save_pretrained(tmp_path)
    rebuilt = AutoTokenizer.from_pretrained(tmp_path)  # transformers 5 rebuilds it non-legacy
    text = vicuna_text(CONVERSATION)
    assert rebuilt(text).input_ids != PINNED_IDS  # the trap is real: "</s>USER" loses its word start
    embedder = Embedder(tiny_mistral, rebuilt, progress=False)
    assert embedder.encoding == "tokenizer"
    assert embedder.encode([text]) == [PINNED_IDS]


def test_runs_of_spaces_are_split_as_sentencepiece_did(tiny_mistral, mistral_tokenizer):
    assert mistral_tokenizer(SPACES_TEXT).input_ids != SPACES_IDS  # the tokenizers conversion differs here
    assert Embedder(tiny_mistral, mistral_tokenizer, progress=False).encode([SPACES_TEXT]) == [SPACES_IDS]


def test_long_text_is_truncated_keeping_its_beginning_and_counted(tiny_mistral, mistral_tokenizer):
    embedder = Embedder(tiny_mistral, mistral_tokenizer, max_length=10, progress=False)
    ids = embedder.encode([vicuna_text(CONVERSATION), "short"])
    assert ids[0] == PINNED_IDS[:10]
    assert len(ids[1]) < 10
    assert embedder.stats == {"truncated_texts": 1}


# -- vectors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_last_token_embedding_equals_the_text_run_alone(tiny_mistral, mistral_tokenizer, padding_side):
    texts = [vicuna_text(CONVERSATION), "USER: hi ASSISTANT: hello</s>", vicuna_text(CONVERSATION[:2])]
    embedder = Embedder(tiny_mistral, mistral_tokenizer, batch_size=3, progress=False)
    old_side = mistral_tokenizer.padding_side
    mistral_tokenizer.padding_side = padding_side
    try:
        batched = embedder.embed_texts(texts)
    finally:
        mistral_tokenizer.padding_side = old_side
    base = tiny_mistral.model
    with torch.inference_mode():
        for text, vector in zip(texts, batched):
            ids = torch.tensor([embedder.encode([text])[0]])
            alone = base(input_ids=ids).last_hidden_state[0, -1].numpy()  # after the final norm
            np.testing.assert_allclose(vector, alone, rtol=1e-4, atol=1e-5)


def test_embedding_is_the_final_norm_output_at_the_last_token(tiny_mistral, mistral_tokenizer):
    seen = {}
    hook = tiny_mistral.model.norm.register_forward_hook(
        lambda module, args, output: seen.update(pre=args[0], post=output)
    )
    try:
        vector = Embedder(tiny_mistral, mistral_tokenizer, progress=False).embed_texts(["USER: hi"])[0]
    finally:
        hook.remove()
    np.testing.assert_array_equal(vector, seen["post"][0, -1].numpy())
    assert not np.allclose(vector, seen["pre"][0, -1].numpy(), atol=1e-2)


def test_map_batched_and_single_rows_give_the_same_float32_column(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict(rows(CONVERSATION, CONVERSATION[:2], [{"role": "user", "content": "Name a color."}]))
    embedder = Embedder(tiny_llama, byte_tokenizer, batch_size=2, progress=False)
    batched = ds.map(embedder, batched=True, batch_size=3)
    single = ds.map(embedder)
    assert str(batched.data.schema.field("embedding").type) == "list<item: float>"
    assert batched.column_names == ["messages", "embedding"]
    np.testing.assert_allclose(np.array(batched["embedding"]), np.array(single["embedding"]), rtol=1e-5, atol=1e-6)
    assert np.array(batched["embedding"]).shape == (3, tiny_llama.config.hidden_size)


def test_map_with_rank_runs_on_the_rank_device(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict(rows(CONVERSATION))
    embedder = Embedder(tiny_llama, byte_tokenizer, progress=False)
    out = ds.map(embedder, batched=True, with_rank=True)
    np.testing.assert_allclose(out["embedding"][0], embedder.embed_texts([vicuna_text(CONVERSATION)])[0], rtol=1e-6)


def test_sharegpt_and_alpaca_rows_render_the_same_vicuna_text(tiny_llama, byte_tokenizer):
    embedder = Embedder(tiny_llama, byte_tokenizer, progress=False)
    sharegpt = embedder({"conversations": [[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]]})
    alpaca = embedder({"instruction": ["q"], "input": [""], "output": ["a"]})
    np.testing.assert_array_equal(sharegpt["embedding"][0], alpaca["embedding"][0])


def test_a_row_passed_directly_is_refused_unless_batched_is_false(tiny_llama, byte_tokenizer):
    embedder = Embedder(tiny_llama, byte_tokenizer, progress=False)
    row = {"instruction": "q", "input": "", "output": "a"}
    with pytest.raises(ConfigError) as error:
        embedder(row)
    assert str(error.value) == (
        "expected a batch of columns ({'column': [one value per row]}), but column 'instruction' holds 'q', "
        "as one row does; to pass one row, call with batched=False"
    )
    alone = embedder(row, batched=False)["embedding"]
    np.testing.assert_array_equal(alone, embedder({key: [value] for key, value in row.items()})["embedding"][0])


def test_unreadable_row_raises_an_error_naming_the_row(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict({"instruction": ["q", None], "output": ["a", "b"]})
    with pytest.raises(RowError, match="row 1: instruction must be a string"):
        ds.map(Embedder(tiny_llama, byte_tokenizer, progress=False), batched=True, with_indices=True)


def test_embedder_pickles_without_weights_and_has_a_stable_fingerprint():
    embedder = Embedder("org/some-model", batch_size=4)
    clone = pickle.loads(pickle.dumps(embedder))
    assert clone._model is None and embedder._model is None  # nothing was loaded
    assert Hasher.hash(embedder) == Hasher.hash(clone) == Hasher.hash(Embedder("org/some-model", batch_size=4))
    assert Hasher.hash(embedder) != Hasher.hash(Embedder("org/some-model", batch_size=4, only_answer=True))


def test_new_weights_in_the_same_folder_are_embedded_again_not_served_from_the_cache(tmp_path):
    from deita_hf.testing import save_tiny_scorer

    path = str(save_tiny_scorer(tmp_path / "model", seed=0))
    rows = {"messages": [[{"role": "user", "content": f"Question {i}"}, {"role": "assistant", "content": "Yes"}]
                         for i in range(3)]}  # fmt: skip
    Dataset.from_dict(rows).save_to_disk(tmp_path / "pool")
    ds = Dataset.load_from_disk(tmp_path / "pool")
    first = ds.map(Embedder(path, progress=False), batched=True)
    unchanged = Embedder(path, progress=False)
    assert ds.map(unchanged, batched=True).cache_files == first.cache_files and unchanged._model is None
    save_tiny_scorer(path, seed=1)
    embedder = Embedder(path, progress=False)
    second = ds.map(embedder, batched=True)
    assert second._fingerprint != first._fingerprint and embedder._model is not None
    assert not np.allclose(second["embedding"], first["embedding"])


def test_embedder_loads_a_local_path_as_the_base_model(tiny_llama, byte_tokenizer, tmp_path):
    tiny_llama.save_pretrained(tmp_path)
    byte_tokenizer.save_pretrained(tmp_path)
    from_path = Embedder(str(tmp_path), progress=False)
    assert type(from_path.model).__name__ == "LlamaModel"  # no LM head
    assert from_path.resolved_kind == "causal_lm"
    expected = Embedder(tiny_llama, byte_tokenizer, progress=False).embed_texts(["USER: hi"])
    np.testing.assert_allclose(from_path.embed_texts(["USER: hi"]), expected, rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        Embedder("org/model", kind="mean")
    with pytest.raises(ValueError, match="batch_size"):
        Embedder("org/model", batch_size=0)


# -- sentence models -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm(minilm_path):
    return Embedder(str(minilm_path), progress=False)


def test_auto_kind_is_sentence_for_minilm_and_causal_lm_for_llama(minilm, tiny_llama, byte_tokenizer):
    assert minilm.resolved_kind == "sentence"
    assert Embedder(tiny_llama, byte_tokenizer).resolved_kind == "causal_lm"


def test_sentence_embedding_is_the_mask_weighted_mean_of_the_token_states(minilm):
    texts = ["A short text.", "A somewhat longer text, so that the first one is padded in the batch."]
    vectors = minilm.embed_texts(texts)
    with torch.inference_mode():
        for text, vector in zip(texts, vectors):
            encoded = minilm.tokenizer(text, return_tensors="pt")
            states = minilm.model(**encoded).last_hidden_state[0]
            np.testing.assert_allclose(vector, states.mean(dim=0).numpy(), rtol=1e-4, atol=1e-5)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)


def test_sentence_model_is_held_to_its_own_256_token_limit(minilm):
    before = minilm.stats.get("truncated_texts", 0)
    ids = minilm.encode(["word " * 1000])
    assert len(ids[0]) == 256 and ids[0][-1] == minilm.tokenizer.sep_token_id
    assert minilm.stats["truncated_texts"] == before + 1


def test_sentence_embeddings_of_paraphrases_are_closer_than_of_unrelated_texts(minilm):
    a, b, c = minilm.embed_texts(
        ["How do I bake bread?", "What is a recipe for baking bread?", "The stock market fell."]
    )
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > 0.6 > cos(a, c)


def test_loading_from_a_causal_lm_checkpoint_prints_no_load_report_for_its_unused_head(tmp_path, capfd):
    import transformers

    from deita_hf.testing import save_tiny_scorer

    folder = save_tiny_scorer(tmp_path / "causal-lm")
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_warning()  # as a script's default, whatever ran before in this process
    capfd.readouterr()
    embedder = Embedder(str(folder), progress=False)
    embedder.load()
    assert embedder.resolved_kind == "causal_lm"
    transformers.utils.logging.set_verbosity(verbosity)
    assert "LOAD REPORT" not in capfd.readouterr().err


def test_a_load_report_of_missing_weights_still_shows():
    import logging

    from deita_hf.modeling import _UnusedHeadFilter

    def record(message):
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "", 0, message, None, None)

    keep = _UnusedHeadFilter().filter
    assert not keep(record("LlamaModel LOAD REPORT from: x\nlm_head.weight | UNEXPECTED"))
    assert keep(record("LlamaModel LOAD REPORT from: x\nlm_head.weight | UNEXPECTED\nnorm.weight | MISSING"))
    assert keep(record("something else"))


def test_a_row_without_a_user_turn_is_unreadable_as_for_the_scorers(tiny_llama, byte_tokenizer):
    system_only = [{"role": "system", "content": "Only a system text."}]
    ds = Dataset.from_dict({"messages": [CONVERSATION, system_only]})
    with pytest.raises(RowError, match="row 1: the conversation has no user turn"):
        ds.map(Embedder(tiny_llama, byte_tokenizer, progress=False), batched=True, with_indices=True)
    embedder = Embedder(tiny_llama, byte_tokenizer, progress=False, on_error="nan")
    out = ds.map(embedder, batched=True)
    vectors = np.array(out["embedding"])
    assert np.isfinite(vectors[0]).all() and np.isnan(vectors[1]).all()
    assert embedder.stats == {"unreadable_rows": 1}
