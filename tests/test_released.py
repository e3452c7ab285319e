"""The registry of released Deita artifacts (SPEC section 9) and its loaders.

The loaders are tested offline by intercepting the Hub at the library boundary: ``from_pretrained`` and
``datasets.load_dataset`` are replaced by stand-ins that record the call and return local objects.
"""

from __future__ import annotations

import datasets
import pytest
import transformers
from datasets import Dataset

from deita_hf.chat_template import VICUNA_CHAT_TEMPLATE
from deita_hf.constants import VICUNA_SYSTEM
from deita_hf.released import RELEASED, load_released_data, load_released_model, released
from deita_hf.testing import byte_bpe_tokenizer, save_tiny_scorer

SPEC_SECTION_9 = {
    "hkust-nlp/deita-complexity-scorer": ("model", "scorer"),
    "hkust-nlp/deita-quality-scorer": ("model", "scorer"),
    "hkust-nlp/deita-7B-v1.0": ("model", "chat_model"),
    "hkust-nlp/deita-7b-v1.0-sft": ("model", "chat_model"),
    "hkust-nlp/deita-llama2-13b-v1.0-sft": ("model", "chat_model"),
    "hkust-nlp/deita-llama1-13b-v1.0-sft": ("model", "chat_model"),
    "hkust-nlp/deita-6k-v0": ("dataset", "selection"),
    "hkust-nlp/deita-10k-v0": ("dataset", "selection"),
    "AndrewZeng/deita_sota_pool": ("dataset", "pool"),
    "hkust-nlp/deita-redundant-pool-data": ("dataset", "pool"),
    "hkust-nlp/deita-complexity-scorer-data": ("dataset", "scorer_data"),
    "hkust-nlp/deita-quality-scorer-data": ("dataset", "scorer_data"),
}


def test_the_registry_holds_exactly_the_released_ids():
    assert {repo_id: (a.repo_type, a.kind) for repo_id, a in RELEASED.items()} == SPEC_SECTION_9


def test_released_lists_one_kind():
    assert [a.repo_id for a in released("selection")] == ["hkust-nlp/deita-6k-v0", "hkust-nlp/deita-10k-v0"]
    assert RELEASED["hkust-nlp/deita-6k-v0"].url == "https://huggingface.co/datasets/hkust-nlp/deita-6k-v0"
    with pytest.raises(ValueError, match="unknown kind 'models'"):
        released("models")


@pytest.fixture
def hub_models(monkeypatch, tmp_path):
    """``from_pretrained`` of any id loads a tiny local model; the ids asked for are recorded."""
    folder = save_tiny_scorer(tmp_path / "tiny")
    calls = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        original = cls.from_pretrained.__func__

        def fake(klass, name, *args, _original=original, **kwargs):
            calls.append((klass.__name__, name, kwargs.get("revision")))
            kwargs = {k: v for k, v in kwargs.items() if k != "revision"}
            return _original(klass, str(folder), *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(fake))
    return calls


def test_a_released_model_comes_with_the_vicuna_chat_template(hub_models):
    model, tokenizer = load_released_model("hkust-nlp/deita-7b-v1.0-sft", revision="v1")
    assert hub_models == [
        ("AutoModelForCausalLM", "hkust-nlp/deita-7b-v1.0-sft", "v1"),
        ("AutoTokenizer", "hkust-nlp/deita-7b-v1.0-sft", "v1"),
    ]
    assert tokenizer.chat_template == VICUNA_CHAT_TEMPLATE
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == f"<s>{VICUNA_SYSTEM} USER: Hi ASSISTANT:"
    assert model.config.vocab_size == len(byte_bpe_tokenizer())


def test_model_ids_match_whatever_their_case(hub_models):
    load_released_model("HKUST-NLP/DEITA-7B-V1.0")
    assert hub_models[0][1] == "hkust-nlp/deita-7B-v1.0"


def test_a_scorer_is_not_loaded_as_a_chat_model(hub_models):
    with pytest.raises(ValueError, match="not a released Deita chat_model; the released ones are: hkust-nlp/deita"):
        load_released_model("hkust-nlp/deita-quality-scorer")
    assert hub_models == []


def test_released_data_comes_as_messages(monkeypatch):
    sharegpt = Dataset.from_dict(
        {
            "id": ["a", "b"],
            "conversations": [
                [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}],
                [
                    {"from": "system", "value": "Be brief."},
                    {"from": "human", "value": "q2"},
                    {"from": "gpt", "value": "a2"},
                    {"from": "human", "value": "q3"},
                    {"from": "gpt", "value": "a3"},
                ],
            ],
        }
    )
    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, kwargs))
        return sharegpt

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_released_data("hkust-nlp/deita-10k-v0")
    assert calls == [("hkust-nlp/deita-10k-v0", {"split": "train", "revision": None})]
    assert data.column_names == ["id", "messages"]
    assert data["messages"] == [
        [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2"},
            {"role": "user", "content": "q3"},
            {"role": "assistant", "content": "a3"},
        ],
    ]


def test_released_data_refuses_a_model_id():
    with pytest.raises(ValueError, match="not a released Deita selection or pool"):
        load_released_data("hkust-nlp/deita-7B-v1.0")


def test_deita_hf_released_lists_every_artifact_with_size_license_and_paper_results(capsys):
    from deita_hf.cli import main

    assert main(["released"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "kind", "size", "license", "what"]
    listed = {line.split()[0]: line for line in lines[1:]}
    assert set(listed) == set(SPEC_SECTION_9)
    assert "AndrewZeng/deita_sota_pool" in listed and "300K rows" in listed["AndrewZeng/deita_sota_pool"]
    assert "MT-Bench 7.55, AlpacaEval 90.06%" in listed["hkust-nlp/deita-7B-v1.0"]
    assert "Apache-2.0" in listed["hkust-nlp/deita-7B-v1.0"] and "MIT" in listed["hkust-nlp/deita-6k-v0"]
    assert "LLaMA license" in listed["hkust-nlp/deita-complexity-scorer"]


def test_deita_hf_released_lists_one_kind(capsys):
    from deita_hf.cli import main

    assert main(["released", "--kind", "scorer_data"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == ["hkust-nlp/deita-complexity-scorer-data", "hkust-nlp/deita-quality-scorer-data"]


@pytest.fixture
def fake_snapshot_download(monkeypatch, tmp_path):
    """huggingface_hub's snapshot_download, intercepted: records its arguments and returns a folder."""
    import huggingface_hub

    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        return kwargs["local_dir"] or str(tmp_path / "cache" / kwargs["repo_id"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    return calls


def test_download_uses_the_hubs_snapshot_download_with_the_published_id(fake_snapshot_download, tmp_path, capsys):
    from deita_hf.cli import main

    assert main(["released", "download", "HKUST-NLP/Deita-7b-V1.0", "--local_dir", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert main(["released", "download", "andrewzeng/deita_sota_pool", "--revision", "abc"]) == 0
    assert fake_snapshot_download == [
        {"repo_id": "hkust-nlp/deita-7B-v1.0", "repo_type": "model", "revision": None,
         "local_dir": str(tmp_path / "m"), "allow_patterns": None},
        {"repo_id": "AndrewZeng/deita_sota_pool", "repo_type": "dataset", "revision": "abc",
         "local_dir": None, "allow_patterns": None},
    ]  # fmt: skip


def test_download_of_an_unknown_id_lists_the_released_ones(fake_snapshot_download, capsys):
    from deita_hf.cli import main

    assert main(["released", "download", "hkust-nlp/deita-13b"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(
        "deita-hf released: error: 'hkust-nlp/deita-13b' is not a released Deita model or data set"
    )
    assert "AndrewZeng/deita_sota_pool" in error and fake_snapshot_download == []


def test_the_same_from_python(fake_snapshot_download):
    from deita_hf import download_released, released

    assert [a.repo_id for a in released("pool")] == [
        "AndrewZeng/deita_sota_pool",
        "hkust-nlp/deita-redundant-pool-data",
    ]
    download_released("hkust-nlp/deita-complexity-scorer-data")
    assert fake_snapshot_download[0]["repo_type"] == "dataset"


def test_scorer_training_data_loads_from_its_dataset_repository(monkeypatch):
    from deita_hf import load_released_scorer_data

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda path, **kwargs: calls.append((path, kwargs)) or "data")
    assert load_released_scorer_data("quality") == "data"
    assert calls == [("hkust-nlp/deita-quality-scorer-data", {"split": "train", "revision": None})]
    with pytest.raises(ValueError, match="task must be 'complexity' or 'quality'"):
        load_released_scorer_data("diversity")
