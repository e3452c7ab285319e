"""Complexity and quality scores: exact, batched, picklable (SPEC sections 2, 3, 5 and 10)."""

import copy
import math
import pickle

import pytest
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher

from deita_hf import ComplexityScorer, DeitaScorer, QualityScorer, deita_score
from deita_hf.constants import COMPLEXITY_PROMPT, QUALITY_PROMPT, SCORER_CONTEXT_LENGTH
from deita_hf.errors import ConfigError
from deita_hf.formats import RowError
from deita_hf.scoring import digit_token_ids, expected_score
from deita_hf.testing import reference_score, save_tiny_scorer

INSTRUCTIONS = [
    "What is 2+2?",
    "Write a sonnet about the sea, in iambic pentameter, with an ABAB CDCD EFEF GG rhyme scheme.",
    "Hi",
    "Explain, step by step, how a transformer language model turns a prompt into the next token.",
    "List three prime numbers.",
]
OUTPUTS = ["4", "The sea is wide and deep and blue...", "", "First the text is tokenized. Then...", "2, 3, 5"]
ALPACA_BATCH = {"instruction": INSTRUCTIONS, "output": OUTPUTS}
TWO_TURNS = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
}


def make(scorer_class, model, tokenizer, **kwargs):
    return scorer_class(model, tokenizer, progress=False, **kwargs)


# -- prompts ------------------------------------------------------------------------------------------------
def test_prompt_templates_are_character_exact():
    assert COMPLEXITY_PROMPT == (
        "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
        "##Query: {instruction}  \n##Complexity: "
    )
    assert QUALITY_PROMPT == (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
        "Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
    )


def test_encoded_prompts_of_a_known_row_with_the_mistral_tokenizer(tiny_mistral, mistral_tokenizer):
    quality = make(QualityScorer, tiny_mistral, mistral_tokenizer)
    ids, shortened = quality.encode("What is 2+2?", "4")
    assert not shortened
    # BOS + the SentencePiece pieces of the prompt (checked against sentencepiece itself).
    assert ids == [
        1, 995, 460, 264, 10865, 13892, 28723, 5919, 9051, 272, 4045, 7420, 302, 272, 12107, 7606, 298, 272,
        22478, 28723, 28705, 13, 422, 24994, 28771, 28747, 13, 3195, 349, 28705, 28750, 28806, 28750, 28804, 13,
        28771, 2963, 28771, 28747, 13, 28781, 28705, 13, 1064, 15864, 472, 28747, 28705,
    ]  # fmt: skip
    complexity = make(ComplexityScorer, tiny_mistral, mistral_tokenizer)
    ids, _ = complexity.encode("What is 2+2?")
    assert ids == [
        1, 995, 460, 264, 10865, 13892, 28723, 5919, 9051, 272, 17599, 7420, 302, 272, 2296, 2188, 5709, 28723,
        28705, 13, 1064, 3294, 28747, 1824, 349, 28705, 28750, 28806, 28750, 28804, 259, 13, 1064, 28274, 472,
        28747, 28705,
    ]  # fmt: skip


def test_scorer_prompts_tokenize_the_same_with_legacy_and_non_legacy_llama_tokenizers(mistral_tokenizer, tmp_path):
    # transformers 5 reloads a LlamaTokenizer non-legacy; the scorer prompts hold no special token, so the
    # legacy setting changes none of their ids. (Runs of spaces are another matter: the scorers encode with
    # SentencePiece itself where the checkpoint has a tokenizer.model, see tests/test_tokenization.py.)
    from transformers import AutoTokenizer

    mistral_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    scorer = QualityScorer.__new__(QualityScorer)
    for instruction, output in zip(INSTRUCTIONS, OUTPUTS):
        prompt = scorer.render(instruction, output)
        assert reloaded(prompt).input_ids == mistral_tokenizer(prompt).input_ids


# -- the score formula --------------------------------------------------------------------------------------
def test_mistral_digit_ids_are_derived_from_the_tokenizer(mistral_tokenizer):
    assert digit_token_ids(mistral_tokenizer) == [28740, 28750, 28770, 28781, 28782, 28784]


def test_a_tokenizer_without_single_digit_tokens_is_refused(tiny_llama):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1, "12": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", name_or_path="words-only")
    with pytest.raises(ValueError, match="'words-only' has no single token for the digit '1'"):
        digit_token_ids(tokenizer)


def test_expected_score_is_the_mean_of_1_to_6_under_the_softmax_of_the_six_logits():
    logits = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
    )
    p = torch.softmax(torch.arange(1.0, 7.0), 0)
    expected = [3.5, 1.0, float((p * torch.arange(1.0, 7.0)).sum())]
    assert expected_score(logits).tolist() == pytest.approx(expected, abs=1e-6)


def test_score_equals_the_reference_generate_first_step(tiny_llama, byte_tokenizer):
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer)
    scores = scorer(ALPACA_BATCH)["quality_scores"]
    for instruction, output, score in zip(INSTRUCTIONS, OUTPUTS, scores):
        expected = reference_score(tiny_llama, byte_tokenizer, scorer.render(instruction, output))
        assert score == [pytest.approx(expected, abs=1e-5)]


def test_scores_lie_in_1_to_6_and_differ_between_prompts(tiny_llama, byte_tokenizer):
    scores = [s[0] for s in make(ComplexityScorer, tiny_llama, byte_tokenizer)(ALPACA_BATCH)["complexity_scores"]]
    assert all(1.0 <= s <= 6.0 for s in scores)
    assert len({round(s, 6) for s in scores}) == len(scores)


# -- batching -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scorer_class", [ComplexityScorer, QualityScorer])
@pytest.mark.parametrize("reuse_prefix", [True, False])
def test_batched_scores_equal_one_prompt_at_a_time(scorer_class, reuse_prefix, tiny_llama, byte_tokenizer):
    batched = make(scorer_class, tiny_llama, byte_tokenizer, batch_size=3, reuse_prefix=reuse_prefix)
    single = make(scorer_class, tiny_llama, byte_tokenizer, batch_size=1, reuse_prefix=False)
    column = scorer_class.column
    together = batched(ALPACA_BATCH)[column]
    one_by_one = [
        single({"instruction": i, "output": o}, batched=False)[column] for i, o in zip(INSTRUCTIONS, OUTPUTS)
    ]
    assert len(together) == len(one_by_one) == len(INSTRUCTIONS)
    for a, b in zip(together, one_by_one):
        assert abs(a[0] - b[0]) < 1e-5


@pytest.mark.parametrize("scorer_class", [ComplexityScorer, QualityScorer])
def test_batched_scores_equal_single_with_the_mistral_tokenizer(scorer_class, tiny_mistral, mistral_tokenizer):
    batched = make(scorer_class, tiny_mistral, mistral_tokenizer, batch_size=4)
    column = scorer_class.column
    together = batched(ALPACA_BATCH)[column]
    for instruction, output, score in zip(INSTRUCTIONS, OUTPUTS, together):
        prompt = batched.render(instruction, output)
        assert abs(score[0] - reference_score(tiny_mistral, mistral_tokenizer, prompt)) < 1e-5


def test_the_shared_template_head_is_computed_once(tiny_mistral, mistral_tokenizer):
    scorer = make(ComplexityScorer, tiny_mistral, mistral_tokenizer)
    scorer.load()
    head = mistral_tokenizer(COMPLEXITY_PROMPT.split("{")[0]).input_ids
    assert scorer._prefix_ids == head[:-2]
    assert len(scorer._prefix_ids) >= 15
    assert scorer._prefix_cache.get_seq_length() == len(scorer._prefix_ids)


# -- conversations ------------------------------------------------------------------------------------------------
def test_the_same_conversation_in_four_formats_scores_the_same(tiny_llama, byte_tokenizer):
    scorer = DeitaScorer(tiny_llama, tiny_llama, complexity_tokenizer=byte_tokenizer, quality_tokenizer=byte_tokenizer)
    rows = [
        {"messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}]},
        {"conversations": [{"from": "human", "value": "Name a prime."}, {"from": "gpt", "value": "7"}]},
        {"instruction": "Name a prime.", "input": "", "output": "7"},
        {"prompt": "Name a prime.", "response": "7"},
    ]
    results = [scorer(row, batched=False) for row in rows]
    assert all(result == results[0] for result in results)


def test_multi_turn_rows_get_one_score_per_turn_and_system_is_skipped(tiny_llama, byte_tokenizer):
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer)
    scores = scorer(TWO_TURNS, batched=False)["quality_scores"]
    first = scorer({"prompt": "What is 2+2?", "response": "4"}, batched=False)["quality_scores"]
    second = scorer({"prompt": "And 3+3?", "response": "6"}, batched=False)["quality_scores"]
    assert scores == pytest.approx(first + second, abs=1e-5)


def test_a_leading_assistant_message_is_skipped(tiny_llama, byte_tokenizer):
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer)
    messages = [{"role": "assistant", "content": "Hello!"}] + TWO_TURNS["messages"][1:3]
    assert scorer({"messages": messages}, batched=False) == scorer(
        {"prompt": "What is 2+2?", "response": "4"}, batched=False
    )


def test_a_missing_answer_is_scored_as_an_empty_response(tiny_llama, byte_tokenizer):
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer)
    last_unanswered = {"messages": [{"role": "user", "content": "Hi"}]}
    assert scorer(last_unanswered, batched=False) == scorer({"prompt": "Hi", "response": ""}, batched=False)


def test_deita_score_of_two_turns_is_c1_q1_plus_c2_q2(tiny_llama, byte_tokenizer):
    from deita_hf.testing import tiny_causal_lm

    quality_model = tiny_causal_lm(byte_tokenizer, seed=1)
    deita = DeitaScorer(
        tiny_llama, quality_model, complexity_tokenizer=byte_tokenizer, quality_tokenizer=byte_tokenizer
    )
    out = deita({"messages": [TWO_TURNS["messages"]]})
    c = make(ComplexityScorer, tiny_llama, byte_tokenizer)(TWO_TURNS, batched=False)["complexity_scores"]
    q = make(QualityScorer, quality_model, byte_tokenizer)(TWO_TURNS, batched=False)["quality_scores"]
    assert out["complexity_scores"][0] == pytest.approx(c, abs=1e-6)
    assert out["quality_scores"][0] == pytest.approx(q, abs=1e-6)
    assert out["deita_score"][0] == pytest.approx(c[0] * q[0] + c[1] * q[1], abs=1e-5)
    assert c != q  # two different models


# -- long inputs ------------------------------------------------------------------------------------------------------
def test_an_over_long_prompt_is_cut_in_the_middle_of_the_response_and_counted(tiny_llama, byte_tokenizer):
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer, max_length=120)
    response = "BEGIN " + "lorem ipsum dolor sit amet " * 40 + " END"
    ids, shortened = scorer.encode("Keep this question whole?", response)
    assert shortened and len(ids) <= 120
    text = byte_tokenizer.decode(ids, skip_special_tokens=True)
    assert text.startswith(QUALITY_PROMPT.split("{")[0])
    assert "Keep this question whole?" in text
    assert "BEGIN" in text and text.endswith(" END \n##Quality: ")
    scorer({"prompt": ["Keep this question whole?", "short"], "response": [response, "ok"]})
    assert scorer.stats == {"shortened_prompts": 1}


def test_the_instruction_is_cut_when_the_response_is_not_enough(tiny_llama, byte_tokenizer):
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer, max_length=60)
    instruction = "START " + "many words of a long question " * 30 + " FINISH"
    ids, shortened = scorer.encode(instruction)
    text = byte_tokenizer.decode(ids, skip_special_tokens=True)
    assert shortened and len(ids) <= 60
    assert "START" in text and text.endswith(" FINISH  \n##Complexity: ")


def test_max_length_below_the_template_is_an_error(tiny_llama, byte_tokenizer):
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer, max_length=10)
    with pytest.raises(ValueError, match="max_length=10 is shorter than the complexity_scores prompt template"):
        scorer.encode("q")


def test_max_length_defaults_to_the_model_context(byte_tokenizer):
    from deita_hf.testing import tiny_causal_lm

    model = tiny_causal_lm(byte_tokenizer, max_position_embeddings=1536)
    assert make(ComplexityScorer, model, byte_tokenizer).effective_max_length == 1536
    del model.config.max_position_embeddings  # a config without it: the released scorers' context
    assert make(ComplexityScorer, model, byte_tokenizer).effective_max_length == SCORER_CONTEXT_LENGTH == 2048


# -- bad input ------------------------------------------------------------------------------------------------------------
def test_a_bad_row_in_a_batch_names_its_position(tiny_llama, byte_tokenizer):
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer)
    with pytest.raises(RowError, match=r"row 1: output must be a string, got NoneType \(position in this batch"):
        scorer({"instruction": ["a", "b"], "output": ["x", None]})


def test_a_bad_row_in_dataset_map_names_its_dataset_index(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict({"messages": [TWO_TURNS["messages"]] * 5 + [[{"role": "assistant", "content": "a"}]]})
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer)
    with pytest.raises(RowError, match="row 5: the conversation has no user turn"):
        ds.map(scorer, batched=True, batch_size=4, with_indices=True)


def test_on_error_nan_records_nan_and_counts_the_row(tiny_llama, byte_tokenizer):
    scorer = DeitaScorer(
        tiny_llama, tiny_llama, complexity_tokenizer=byte_tokenizer, quality_tokenizer=byte_tokenizer, on_error="nan"
    )
    out = scorer({"prompt": ["fine", 5], "response": ["ok", "ok"]})
    assert math.isnan(out["quality_scores"][1][0]) and math.isnan(out["deita_score"][1])
    assert math.isfinite(out["deita_score"][0])
    assert scorer.stats == {"unreadable_rows": 1}


def test_on_error_must_be_raise_or_nan():
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'nan', got 'ignore'"):
        ComplexityScorer("some/model", on_error="ignore")


def test_a_loaded_model_needs_its_tokenizer(tiny_llama):
    with pytest.raises(ValueError, match="pass the tokenizer too"):
        ComplexityScorer(tiny_llama)


# -- Dataset.map, pickling, fingerprints -------------------------------------------------------------------------------
def test_map_batched_and_unbatched_agree(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict(ALPACA_BATCH)
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer)
    batched = ds.map(scorer, batched=True, batch_size=2)["complexity_scores"]
    single = ds.map(scorer)["complexity_scores"]
    assert ds.column_names == ["instruction", "output"]
    for a, b in zip(batched, single):
        assert a == pytest.approx(b, abs=1e-5)
    assert ds.map(scorer).column_names == ["instruction", "output", "complexity_scores"]


def test_a_scorer_by_path_pickles_without_weights_and_loads_lazily(tmp_path):
    path = save_tiny_scorer(tmp_path / "scorer", seed=3)
    scorer = ComplexityScorer(str(path), progress=False)
    before = Hasher.hash(scorer)
    payload = pickle.dumps(scorer)
    assert len(payload) < 2000  # settings only
    scorer({"prompt": "hello", "response": "hi"}, batched=False)
    assert scorer._model is not None
    assert Hasher.hash(scorer) == before
    assert len(pickle.dumps(scorer)) == len(payload)
    clone = pickle.loads(payload)
    assert clone._model is None
    row = {"prompt": "hello", "response": "hi"}
    assert clone(row, batched=False) == scorer(row, batched=False)


def test_the_fingerprint_is_stable_across_instances_and_changes_with_settings(tmp_path):
    path = str(save_tiny_scorer(tmp_path / "scorer"))
    assert Hasher.hash(QualityScorer(path)) == Hasher.hash(QualityScorer(path))
    assert Hasher.hash(QualityScorer(path)) != Hasher.hash(QualityScorer(path, max_length=512))
    assert Hasher.hash(QualityScorer(path)) != Hasher.hash(ComplexityScorer(path))


def test_a_second_identical_map_is_served_from_the_cache(tmp_path):
    path = str(save_tiny_scorer(tmp_path / "scorer"))
    Dataset.from_dict(ALPACA_BATCH).save_to_disk(tmp_path / "pool")
    ds = Dataset.load_from_disk(tmp_path / "pool")
    first = ds.map(ComplexityScorer(path, progress=False), batched=True)
    second_scorer = ComplexityScorer(path, progress=False)
    second = ds.map(second_scorer, batched=True)
    assert second._fingerprint == first._fingerprint
    assert second.cache_files == first.cache_files
    assert second_scorer._model is None  # nothing was computed
    assert second["complexity_scores"] == first["complexity_scores"]


def test_new_weights_saved_into_the_same_folder_are_not_served_from_the_cache(tmp_path):
    path = str(save_tiny_scorer(tmp_path / "scorer", seed=0))
    Dataset.from_dict(ALPACA_BATCH).save_to_disk(tmp_path / "pool")
    ds = Dataset.load_from_disk(tmp_path / "pool")
    first = ds.map(ComplexityScorer(path, progress=False), batched=True)
    save_tiny_scorer(path, seed=1)  # retrained: other weights, same folder, same file names and sizes
    scorer = ComplexityScorer(path, progress=False)
    second = ds.map(scorer, batched=True)
    assert second._fingerprint != first._fingerprint
    assert scorer._model is not None  # computed again
    fresh = ds.map(ComplexityScorer(path, progress=False), batched=True, load_from_cache_file=False)
    assert second["complexity_scores"] == fresh["complexity_scores"] != first["complexity_scores"]
    # The folder unchanged since: served from the cache.
    again_scorer = ComplexityScorer(path, progress=False)
    again = ds.map(again_scorer, batched=True)
    assert again.cache_files == second.cache_files and again_scorer._model is None


def test_the_fingerprint_of_a_hub_id_names_the_cached_commit(tmp_path, monkeypatch):
    from deita_hf.modeling import source_signature

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--org--scorer" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--scorer" / "refs").mkdir()
    (tmp_path / "models--org--scorer" / "refs" / "main").write_text(commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    assert source_signature("org/scorer") == commit
    before = Hasher.hash(ComplexityScorer("org/scorer"))
    other = "fedcba9876543210fedcba9876543210fedcba98"
    (snapshot.parent / other).mkdir()
    (snapshot.parent / other / "config.json").write_text("{}")
    (tmp_path / "models--org--scorer" / "refs" / "main").write_text(other)
    assert source_signature("org/scorer") == other
    assert Hasher.hash(ComplexityScorer("org/scorer")) != before


@pytest.mark.slow
def test_num_proc_2_with_rank_equals_one_process(tmp_path):
    path = str(save_tiny_scorer(tmp_path / "scorer", seed=5))
    rows = {"instruction": [f"Question number {i}: " + "why? " * (i % 7) for i in range(24)], "output": ["ok"] * 24}
    ds = Dataset.from_dict(rows)
    scorer = DeitaScorer(path, path, progress=False)
    one = ds.map(scorer, batched=True, batch_size=5)
    two = ds.map(scorer, batched=True, batch_size=5, num_proc=2, with_rank=True, load_from_cache_file=False)
    assert two["instruction"] == rows["instruction"]
    # Worker processes run one thread each: sums are reduced in another order, so equal within 1e-5.
    assert two["deita_score"] == pytest.approx(one["deita_score"], abs=1e-5)
    for column in ("complexity_scores", "quality_scores"):
        assert [len(turns) for turns in two[column]] == [1] * 24
        for a, b in zip(one[column], two[column]):
            assert a == pytest.approx(b, abs=1e-5)


def test_with_rank_on_cpu_runs_on_the_cpu(tiny_llama, byte_tokenizer):
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer)
    scorer({"prompt": ["a"], "response": ["b"]}, rank=1)
    assert scorer._device == torch.device("cpu")


def test_deita_score_is_ready_with_the_released_scorers_and_loads_nothing_until_called():
    assert deita_score.complexity.model_name_or_path == "hkust-nlp/deita-complexity-scorer"
    assert deita_score.quality.model_name_or_path == "hkust-nlp/deita-quality-scorer"
    assert deita_score.complexity._model is None
    assert len(pickle.dumps(deita_score)) < 4000
    assert deita_score.complexity.trust_remote_code is False


def test_deita_scorer_takes_one_revision_per_scorer():
    scorer = DeitaScorer("org/complexity", "org/quality", complexity_revision="abc123", quality_revision="def456")
    assert (scorer.complexity.revision, scorer.quality.revision) == ("abc123", "def456")
    both = DeitaScorer("org/complexity", "org/quality", revision="v1")
    assert (both.complexity.revision, both.quality.revision) == ("v1", "v1")


def test_forward_batches_respect_the_row_and_padded_token_limits(tiny_llama, byte_tokenizer):
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer, batch_size=3, max_batch_tokens=20)
    lengths = [12, 9, 5, 5, 4, 4, 4, 3, 1]  # sorted longest first, as score_ids sorts them
    id_lists = [[0] * n for n in lengths]
    batches = scorer._batches(list(range(len(lengths))), id_lists, prefix_len=0)
    assert batches == [[0], [1, 2], [3, 4, 5], [6, 7, 8]]
    assert all(len(b) <= 3 and len(b) * lengths[b[0]] <= 20 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_max_batch_tokens_changes_no_score(tiny_llama, byte_tokenizer):
    small = make(QualityScorer, tiny_llama, byte_tokenizer, max_batch_tokens=40)(ALPACA_BATCH)["quality_scores"]
    large = make(QualityScorer, tiny_llama, byte_tokenizer, max_batch_tokens=100000)(ALPACA_BATCH)["quality_scores"]
    for a, b in zip(small, large):
        assert abs(a[0] - b[0]) < 1e-5


def test_trl_conversational_and_preference_datasets_score_like_their_messages(tiny_llama, byte_tokenizer):
    user = [{"role": "user", "content": [{"type": "text", "text": "Name a prime."}]}]
    answers = [[{"role": "assistant", "content": "7"}], [{"role": "assistant", "content": "Two."}]]
    messages = Dataset.from_list([{"messages": [{"role": "user", "content": "Name a prime."}, *a]} for a in answers])
    prompt_completion = Dataset.from_list([{"prompt": user, "completion": a} for a in answers])
    preference = Dataset.from_list(
        [{"prompt": user, "chosen": a, "rejected": answers[1 - i]} for i, a in enumerate(answers)]
    )
    scorer = DeitaScorer(
        tiny_llama, tiny_llama, complexity_tokenizer=byte_tokenizer, quality_tokenizer=byte_tokenizer, progress=False
    )
    expected = pytest.approx(list(messages.map(scorer, batched=True)["deita_score"]), abs=1e-5)
    assert list(prompt_completion.map(scorer, batched=True)["deita_score"]) == expected
    assert list(preference.map(scorer, batched=True)["deita_score"]) == expected
    assert list(preference.map(scorer)["deita_score"]) == expected


# -- how Dataset.map calls a scorer: read from the map call, never guessed from the values -------------------------
GOOD = {"messages": TWO_TURNS["messages"]}


def deita(tiny_llama, byte_tokenizer, **kwargs):
    return DeitaScorer(
        tiny_llama, tiny_llama, complexity_tokenizer=byte_tokenizer, quality_tokenizer=byte_tokenizer, **kwargs
    )


@pytest.mark.parametrize("column, empty", [("messages", []), ("conversations", [])])
def test_an_empty_conversation_mapped_unbatched_is_an_error_naming_the_row(tiny_llama, byte_tokenizer, column, empty):
    good = GOOD if column == "messages" else {"conversations": [{"from": "human", "value": "q"}]}
    ds = Dataset.from_list([good, {column: empty}])
    with pytest.raises(RowError, match="row 1: the conversation has no user turn"):
        ds.map(deita(tiny_llama, byte_tokenizer), with_indices=True)
    scorer = deita(tiny_llama, byte_tokenizer, on_error="nan")
    out = ds.map(scorer)
    assert math.isfinite(out["deita_score"][0]) and math.isnan(out["deita_score"][1])
    alone = scorer.complexity(good, batched=False)["complexity_scores"]
    assert out["complexity_scores"][0] == pytest.approx(alone, abs=1e-5)
    assert scorer.stats == {"unreadable_rows": 1}


def test_a_batch_whose_first_row_is_none_is_a_batch(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict({"messages": [None, GOOD["messages"], None]})
    with pytest.raises(RowError, match="row 0: column 'messages' must be a list of messages, got NoneType"):
        ds.map(deita(tiny_llama, byte_tokenizer), batched=True, with_indices=True)
    scorer = deita(tiny_llama, byte_tokenizer, on_error="nan")
    out = ds.map(scorer, batched=True)
    assert [math.isnan(score) for score in out["deita_score"]] == [True, False, True]
    assert scorer.stats == {"unreadable_rows": 2}


def test_unbatched_with_indices_names_the_dataset_row(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict({"prompt": ["a", "b", None], "response": ["x", "y", "z"]})
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer)
    with pytest.raises(RowError, match="row 2: prompt must be a string or a list of messages, got NoneType"):
        ds.map(scorer, with_indices=True)
    assert scorer._device == torch.device("cpu")


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"batched": True},
        {"with_indices": True},
        {"with_rank": True},
        {"with_indices": True, "with_rank": True},
        {"batched": True, "with_indices": True, "with_rank": True},
    ],
)
def test_every_map_calling_convention_gives_the_same_scores(tiny_llama, byte_tokenizer, flags):
    ds = Dataset.from_dict(ALPACA_BATCH)
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer)
    expected = scorer(ALPACA_BATCH, batched=True)["complexity_scores"]
    out = ds.map(scorer, batch_size=2, load_from_cache_file=False, **flags)["complexity_scores"]
    for a, b in zip(out, expected):
        assert a == pytest.approx(b, abs=1e-5)


def test_iterable_dataset_map_unbatched_reads_one_row(tiny_llama, byte_tokenizer):
    ds = Dataset.from_list([GOOD, {"messages": []}]).to_iterable_dataset()
    scorer = deita(tiny_llama, byte_tokenizer, on_error="nan")
    scores = [row["deita_score"] for row in ds.map(scorer)]
    assert math.isfinite(scores[0]) and math.isnan(scores[1])


def test_a_direct_call_takes_a_batch_as_declared_and_one_row_with_batched_false(tiny_llama, byte_tokenizer):
    assert ComplexityScorer.batched is True and DeitaScorer.batched is True
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer)
    assert scorer({"messages": []}) == {"complexity_scores": []}  # a batch of no rows
    with pytest.raises(RowError, match="the conversation has no user turn"):
        scorer({"messages": []}, batched=False)


def test_a_row_passed_directly_as_a_batch_is_refused_saying_to_pass_batched_false(tiny_llama, byte_tokenizer):
    scorer = deita(tiny_llama, byte_tokenizer, on_error="nan")
    with pytest.raises(ConfigError) as error:
        scorer({"prompt": "What is 2+2?", "response": "4"})
    assert str(error.value) == (
        "expected a batch of columns ({'column': [one value per row]}), but column 'prompt' holds 'What is 2+2?', "
        "as one row does; to pass one row, call with batched=False"
    )
    with pytest.raises(ConfigError) as error:
        scorer(GOOD, 7)
    assert str(error.value) == (
        "expected a batch of columns ({'column': [one value per row]}), but column 'messages' holds messages "
        "({'role': 'system', 'content': 'Be brief.'}), as one row does; to pass one row, call with batched=False"
    )
    assert scorer.stats == {}  # refused before any row was read (on_error="nan" would have counted them)


def test_a_direct_call_follows_the_declared_convention_unless_batched_is_passed(tiny_llama, byte_tokenizer):
    scorer = make(QualityScorer, tiny_llama, byte_tokenizer)
    row = {"prompt": "What is 2+2?", "response": "4"}
    expected = scorer(row, batched=False)
    scorer.batched = False
    assert scorer(row) == expected
    assert scorer({"prompt": ["What is 2+2?"], "response": ["4"]}, batched=True) == {
        "quality_scores": [expected["quality_scores"]]
    }


@pytest.mark.slow
def test_num_proc_2_counts_the_unreadable_rows_of_every_worker(tmp_path):
    path = str(save_tiny_scorer(tmp_path / "scorer", seed=5))
    rows = {"prompt": [None if i % 3 == 0 else f"question {i}" for i in range(12)], "response": ["ok"] * 12}
    scorer = DeitaScorer(path, path, progress=False, on_error="nan")
    out = Dataset.from_dict(rows).map(scorer, batched=True, batch_size=3, num_proc=2, load_from_cache_file=False)
    assert sum(math.isnan(score) for score in out["deita_score"]) == 4
    assert scorer.stats == {"unreadable_rows": 4}
    one = DeitaScorer(path, path, progress=False, on_error="nan", max_length=64)
    Dataset.from_dict(rows).map(one, batched=True, batch_size=3, num_proc=2, load_from_cache_file=False)
    assert one.stats == {"unreadable_rows": 4}  # another scorer's workers count for it alone


def test_a_scorer_called_from_a_mapped_function_follows_that_call(tiny_llama, byte_tokenizer):
    ds = Dataset.from_dict(ALPACA_BATCH)
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer)
    expected = scorer(ALPACA_BATCH, batched=True)["complexity_scores"]
    out = ds.map(lambda batch, indices: scorer(batch, indices=indices), batched=True, with_indices=True)
    for a, b in zip(out["complexity_scores"], expected):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_bf16_model_in_training_mode_passed_in_is_left_as_it_was(tiny_llama, byte_tokenizer):
    given = copy.deepcopy(tiny_llama).to(torch.bfloat16).train()
    weights = {name: p.detach().clone() for name, p in given.named_parameters()}
    scorer = make(ComplexityScorer, given, byte_tokenizer)
    scores = scorer(ALPACA_BATCH, batched=True)["complexity_scores"]
    assert given.training and all(p.dtype == torch.bfloat16 for p in given.parameters())
    assert all(torch.equal(p, weights[name]) for name, p in given.named_parameters())
    # The scorer ran an fp32 eval-mode copy: the same scores as the fp32 model rounded to bf16 and back.
    assert scorer.model is not given and not scorer.model.training
    assert all(p.dtype == torch.float32 for p in scorer.model.parameters())
    rounded = copy.deepcopy(tiny_llama).to(torch.bfloat16).float().eval()
    expected = make(ComplexityScorer, rounded, byte_tokenizer)(ALPACA_BATCH, batched=True)["complexity_scores"]
    assert scores == expected


def test_a_model_passed_in_ready_to_run_is_used_without_a_copy(tiny_llama, byte_tokenizer):
    scorer = make(ComplexityScorer, tiny_llama, byte_tokenizer)
    scorer(ALPACA_BATCH, batched=True)
    assert scorer.model is tiny_llama and scorer.tokenizer is byte_tokenizer


def test_deita_scorer_counts_unreadable_rows_on_itself_not_on_a_scorer(tiny_llama, byte_tokenizer):
    scorer = deita(tiny_llama, byte_tokenizer, on_error="nan")
    scorer({"messages": [None, GOOD["messages"]]}, batched=True)
    assert scorer.stats == {"unreadable_rows": 1}
    assert scorer.complexity.stats == {} and scorer.quality.stats == {}
