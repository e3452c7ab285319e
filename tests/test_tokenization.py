"""Token ids as the reference stack made them: SentencePiece where the checkpoint ships tokenizer.model."""

import json
import re

import pytest
import torch
from datasets import Dataset

from deita_hf import ComplexityScorer, DeitaScorer, Embedder, QualityScorer
from deita_hf.constants import SCORE_DIGITS
from deita_hf.tokenization import PromptEncoder, prompt_encoder

RUN_OF_SPACES = re.compile(r"  ")


def pool_turns(shared_data):
    rows = [json.loads(line) for line in (shared_data / "alpaca_eval_pool.jsonl").open()]
    return [(row["messages"][0]["content"], row["messages"][1]["content"]) for row in rows]


def sentencepiece(folder):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))


@torch.inference_mode()
def forward_scores(model, id_lists, digit_ids, budget=8192):
    """Scores from plain forward passes of the whole model (LM head included) on the given ids, one score per
    id list: right-padded batches, logits at each row's last token, expected value over the six digits."""
    scores = [None] * len(id_lists)
    order = sorted(range(len(id_lists)), key=lambda i: len(id_lists[i]))
    batches = [[]]
    for i in order:
        if batches[-1] and (len(batches[-1]) + 1) * len(id_lists[i]) > budget:
            batches.append([])
        batches[-1].append(i)
    for members in batches:
        width = max(len(id_lists[i]) for i in members)
        ids = torch.zeros((len(members), width), dtype=torch.long)
        mask = torch.zeros((len(members), width), dtype=torch.long)
        for row, i in enumerate(members):
            ids[row, : len(id_lists[i])] = torch.tensor(id_lists[i])
            mask[row, : len(id_lists[i])] = 1
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(members)), mask.sum(dim=1) - 1]
        logits = model.lm_head(last)[:, digit_ids].double()
        values = (torch.softmax(logits, dim=-1) * torch.arange(1, 7, dtype=torch.double)).sum(dim=-1)
        for i, value in zip(members, values.tolist()):
            scores[i] = value
    return scores


# -- the released scorers' layout --------------------------------------------------------------------------------
def test_released_layout_prompts_are_bos_plus_sentencepiece_ids(released_layout_scorer, shared_data):
    sp = sentencepiece(released_layout_scorer)
    turns = pool_turns(shared_data)
    for scorer_class in (ComplexityScorer, QualityScorer):
        scorer = scorer_class(str(released_layout_scorer), progress=False)
        assert scorer.encoding == "sentencepiece"
        prompts = [scorer.render(instruction, output) for instruction, output in turns]
        ids, shortened = scorer.encode_turns(turns)
        assert shortened == 0
        assert ids == [[sp.bos_id(), *sp.encode(prompt)] for prompt in prompts]
        # The tokenizer that transformers 5 converts from the same file splits runs of spaces differently.
        converted = scorer.tokenizer(prompts).input_ids
        differ = sum(a != b for a, b in zip(converted, ids))
        assert differ == {ComplexityScorer: 152, QualityScorer: 289}[scorer_class]
        assert all(RUN_OF_SPACES.search(p) for p, a, b in zip(prompts, converted, ids) if a != b)


@pytest.mark.slow
def test_released_layout_scores_equal_a_forward_pass_on_sentencepiece_ids(released_layout_scorer, shared_data):
    from transformers import AutoModelForCausalLM

    sp = sentencepiece(released_layout_scorer)
    turns = pool_turns(shared_data)
    path = str(released_layout_scorer)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    digit_ids = [sp.piece_to_id(digit) for digit in SCORE_DIGITS]
    assert digit_ids == [28740, 28750, 28770, 28781, 28782, 28784]
    ds = Dataset.from_dict({"instruction": [t[0] for t in turns], "output": [t[1] for t in turns]})
    spaces = [i for i, (instruction, output) in enumerate(turns) if RUN_OF_SPACES.search(instruction + output)]
    rest = [i for i in range(len(turns)) if i not in set(spaces)]
    assert len(spaces) > 300 and len(rest) > 2000

    both = ds.map(DeitaScorer(path, path, max_batch_tokens=8192, progress=False), batched=True, batch_size=1000)
    for scorer_class in (ComplexityScorer, QualityScorer):
        scorer = scorer_class(path, max_batch_tokens=8192, progress=False)
        prompts = [scorer.render(instruction, output) for instruction, output in turns]
        expected = forward_scores(model, [[sp.bos_id(), *sp.encode(prompt)] for prompt in prompts], digit_ids)
        # Each scorer alone on the rows with runs of spaces; all rows through DeitaScorer.
        alone = ds.select(spaces).map(scorer, batched=True, batch_size=1000)[scorer.column]
        assert max(abs(a[0] - expected[i]) for a, i in zip(alone, spaces)) < 1e-5
        together = both[scorer.column]
        for name, rows in (("runs of spaces", spaces), ("the rest", rest)):
            worst = max(abs(together[i][0] - expected[i]) for i in rows)
            assert worst < 1e-5, f"{scorer.column} on {name}: {worst}"
    assert both["deita_score"] == pytest.approx(
        [c[0] * q[0] for c, q in zip(both["complexity_scores"], both["quality_scores"])], abs=1e-9
    )


def test_the_prefix_cache_and_shortening_work_on_sentencepiece_ids(released_layout_scorer):
    path = str(released_layout_scorer)
    sp = sentencepiece(released_layout_scorer)
    cached = QualityScorer(path, max_length=60, progress=False)
    plain = QualityScorer(path, max_length=60, reuse_prefix=False, progress=False)
    turns = [("Indent:\n    def f():\n        return   1", "Sure:    " + "word " * 80), ("Hi  there", "Hello")]
    ids, shortened = cached.encode_turns(turns)
    assert shortened == 1 and len(ids[0]) <= 60
    # The shortened prompt is the SentencePiece encoding of a shortened text, ending with the template's tail.
    assert ids[0][: len(cached._prefix_ids)] == cached._prefix_ids and len(cached._prefix_ids) >= 4
    assert ids[0][-6:] == sp.encode(" \n##Quality: ")[-6:]
    assert ids[1] == [1, *sp.encode(cached.render(*turns[1]))]
    assert cached.score_turns(turns) == pytest.approx(plain.score_turns(turns), abs=1e-5)


# -- the encoder --------------------------------------------------------------------------------------------------
def test_special_token_strings_are_split_out_and_each_piece_starts_a_word(mistral_tokenizer):
    encoder = PromptEncoder(mistral_tokenizer, mistral_tokenizer.vocab_file)
    sp = encoder.sentencepiece
    assert encoder(["a</s>USER:  b"]) == [[1, *sp.encode("a"), 2, *sp.encode("USER:  b")]]
    assert encoder(["plain  text"]) == [[1, *sp.encode("plain  text")]]


def test_tokenization_sentencepiece_without_a_model_file_is_an_error(byte_tokenizer, tiny_llama, tmp_path):
    with pytest.raises(FileNotFoundError, match="no SentencePiece model was found"):
        prompt_encoder(byte_tokenizer, "sentencepiece", str(tmp_path))
    assert prompt_encoder(byte_tokenizer, "auto", str(tmp_path)).name == "tokenizer"
    with pytest.raises(FileNotFoundError, match="tokenization='tokenizer'"):
        Embedder(tiny_llama, byte_tokenizer, tokenization="sentencepiece", progress=False).encode(["x"])
    with pytest.raises(ValueError, match="tokenization must be one of"):
        ComplexityScorer(tiny_llama, byte_tokenizer, tokenization="spm")


def test_a_sentencepiece_model_that_disagrees_with_the_tokenizer_is_an_error(byte_tokenizer, released_layout_scorer):
    with pytest.raises(ValueError, match="does not give the tokenizer's ids"):
        PromptEncoder(byte_tokenizer, str(released_layout_scorer / "tokenizer.model"))


def test_tokenization_tokenizer_uses_the_transformers_tokenizer(released_layout_scorer):
    scorer = ComplexityScorer(str(released_layout_scorer), tokenization="tokenizer", progress=False)
    assert scorer.encoding == "tokenizer"
    text = 'concise:    "Many gathering  recipes'
    assert scorer.encode(text)[0] == scorer.tokenizer(scorer.render(text, "")).input_ids


def test_a_hub_repository_that_cannot_be_asked_is_an_error_not_a_silent_switch(byte_tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="cannot tell whether 'org/never-cached' .* has a tokenizer.model"):
        prompt_encoder(byte_tokenizer, "auto", "org/never-cached")
    assert prompt_encoder(byte_tokenizer, "tokenizer", "org/never-cached").name == "tokenizer"
