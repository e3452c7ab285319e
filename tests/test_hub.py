"""The dataset card and the push to the Hub.

The push is tested offline by intercepting ``huggingface_hub.HfApi`` at its boundary: a stand-in class records
``create_repo`` and ``upload_folder`` and keeps a copy of the uploaded folder. No HTTP request is made.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import huggingface_hub
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, DatasetCardData
from test_report import synthetic_pool

from deita_hf.cli import main
from deita_hf.constants import CITATION
from deita_hf.hub import push_selection, render_card


def load_folder(path):
    """A dataset folder written by deita-hf (Hub layout) or by ``save_to_disk``."""
    from deita_hf.io import load_input

    return load_input(str(path))


SECRET = "hf_NotARealTokenButSecret12345"


@pytest.fixture(scope="module")
def selection_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hub")
    synthetic_pool().save_to_disk(str(folder / "pool"))
    out = folder / "out"
    assert main(["select", "--dataset_name", str(folder / "pool"), "--output_dir", str(out), "--budget", "8",
                 "--hub_license", "apache-2.0"]) == 0  # fmt: skip
    return out


class FakeHfApi:
    """Stands in for ``huggingface_hub.HfApi``: records the calls and copies what would be uploaded."""

    instances: list[FakeHfApi] = []

    def __init__(self, *args, **kwargs):
        self.init_kwargs = kwargs
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: Path | None = None
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, *, folder_path, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        self.uploaded = Path(FakeHfApi.keep_dir) / f"upload-{len(FakeHfApi.instances)}"
        shutil.copytree(folder_path, self.uploaded)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    FakeHfApi.instances = []
    FakeHfApi.keep_dir = tmp_path
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return FakeHfApi


# -- the card ------------------------------------------------------------------------------------------------------
def test_the_card_validates_with_huggingface_hub_card_classes(selection_run):
    card = render_card(selection_run, "me/deita-selection")
    parsed = DatasetCard(str(card))  # parses the YAML header, as the Hub does
    data = parsed.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"]
    assert "deita" in data["tags"]
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert DatasetCardData(**data).to_dict() == data


def test_the_card_says_how_the_selection_was_made(selection_run):
    summary = json.loads((selection_run / "summary.json").read_text())
    text = render_card(selection_run, "me/deita-selection").text
    assert f"| budget | {summary['selection']['budget']} |" in text
    assert f"| threshold (cosine similarity) | {summary['selection']['threshold']} |" in text
    assert f"`{summary['source']['dataset']}`" in text
    assert f"| selected | {summary['counts']['selected']} |" in text
    assert f"| rejected as too similar | {summary['counts']['rejected_too_similar']} |" in text
    assert summary["command_line"] in text
    assert (selection_run / "recipe.yaml").read_text().strip() in text
    assert CITATION in text
    assert "![scores](report/scores.png)" in text
    assert 'load_dataset("me/deita-selection", split="train")' in text


def test_the_card_names_each_model_with_its_revision(selection_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(selection_run, out)
    summary = json.loads((out / "summary.json").read_text())
    summary["models"] = {
        "complexity": {"model": "hkust-nlp/deita-complexity-scorer", "origin": "Hugging Face Hub", "revision": None,
                       "commit": "a" * 40, "random_weights": False},
        "embedding": {"model": "tiny-random:seed=3", "origin": "random weights, built offline by deita_hf.testing",
                      "revision": None, "commit": None, "random_weights": True},
    }  # fmt: skip
    summary["smoke_run"] = True
    (out / "summary.json").write_text(json.dumps(summary))
    card = render_card(out, "me/x")
    text = card.text
    assert "[hkust-nlp/deita-complexity-scorer](https://huggingface.co/hkust-nlp/deita-complexity-scorer)" in text
    assert f"revision `{'a' * 40}`" in text
    assert "`tiny-random:seed=3` (random weights, built offline by deita_hf.testing)" in text
    assert "**Smoke run.**" in text and "do not train on it" in text
    assert card.data.pretty_name.startswith("Smoke run: ") and "smoke-test" in card.data.tags


# -- the push --------------------------------------------------------------------------------------------------------
def test_push_uploads_the_rows_the_card_and_the_report_in_one_commit(selection_run, fake_hub):
    url = push_selection(selection_run, "me/deita-selection", private=True)
    assert url == "https://huggingface.co/datasets/me/deita-selection"
    (api,) = fake_hub.instances
    assert api.init_kwargs == {}  # the token is left to huggingface_hub
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/deita-selection", "repo_type": "dataset", "private": True,
                               "exist_ok": True}  # fmt: skip
    upload = api.calls[1][1]
    assert upload["repo_id"] == "me/deita-selection" and upload["repo_type"] == "dataset"
    assert upload["delete_patterns"] == ["data/*"]
    files = sorted(str(p.relative_to(api.uploaded)) for p in api.uploaded.rglob("*") if p.is_file())
    assert files == sorted(
        ["README.md", "data/train-00000-of-00001.parquet", "report/report.md"]
        + [f"report/{name}" for name in ("scores.png", "similarity.png", "score_rank.png", "turns.png")]
    )


def test_pushed_rows_are_the_selection_in_order_without_embeddings(selection_run, fake_hub):
    push_selection(selection_run, "me/deita-selection")
    rows = pq.read_table(fake_hub.instances[0].uploaded / "data" / "train-00000-of-00001.parquet").to_pydict()
    selected = load_folder(selection_run / "selected")
    assert "embedding" not in rows
    assert rows["id"] == selected["id"]
    assert rows["deita_score"] == selected["deita_score"]


def test_push_from_the_command_line_never_shows_the_token(selection_run, fake_hub, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    assert main(["report", str(selection_run), "--push_to_hub", "me/deita-selection"]) == 0
    captured = capsys.readouterr()
    assert "pushed: https://huggingface.co/datasets/me/deita-selection" in captured.out
    assert SECRET not in captured.out + captured.err + caplog.text
    uploaded = fake_hub.instances[0].uploaded
    for path in [*uploaded.rglob("*"), *selection_run.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_push_without_a_login_says_how_to_log_in(selection_run, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["report", str(selection_run), "--push_to_hub", "me/x"]) == 1
    assert "hf auth login" in capsys.readouterr().err


def test_only_a_selection_is_pushed(tmp_path, fake_hub):
    (tmp_path / "summary.json").write_text(json.dumps({"command": "score", "counts": {"pool": 3}}))
    with pytest.raises(ValueError, match="holds a `deita-hf score` run: only a selection is pushed"):
        push_selection(tmp_path, "me/x")


def test_a_push_without_a_token_fails_before_any_work(selection_run, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    out = tmp_path / "out"
    pool = selection_run.parent / "pool"
    assert main(["select", "--dataset_name", str(pool), "--output_dir", str(out), "--budget", "3",
                 "--push_to_hub", "me/x"]) == 1  # fmt: skip
    assert "hf auth login" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_push_keeps_the_run_and_says_how_to_push_again(
    selection_run, fake_hub, monkeypatch, tmp_path, capsys
):
    def broken_upload(self, **kwargs):
        raise ConnectionError("the Hub did not answer")

    monkeypatch.setattr(FakeHfApi, "upload_folder", broken_upload)
    out = tmp_path / "out"
    pool = selection_run.parent / "pool"
    assert main(["select", "--dataset_name", str(pool), "--output_dir", str(out), "--budget", "3",
                 "--push_to_hub", "me/x"]) == 1  # fmt: skip
    error = capsys.readouterr().err
    assert "the Hub did not answer" in error
    assert f"deita-hf report {out} --push_to_hub me/x" in error
    assert (out / "summary.json").is_file() and (out / "selected").is_dir()


def test_select_with_push_to_hub_pushes_the_finished_selection(selection_run, fake_hub, tmp_path, capsys):
    out = tmp_path / "out"
    pool = selection_run.parent / "pool"
    assert main(["select", "--dataset_name", str(pool), "--output_dir", str(out), "--budget", "3",
                 "--push_to_hub", "me/x", "--hub_private"]) == 0  # fmt: skip
    (api,) = fake_hub.instances
    assert api.calls[0][1]["private"] is True
    rows = pq.read_table(api.uploaded / "data" / "train-00000-of-00001.parquet").to_pydict()
    assert rows["id"] == load_folder(out / "selected")["id"]
    assert "hub        https://huggingface.co/datasets/me/x" in capsys.readouterr().out


def test_a_push_uploads_only_the_generated_files_and_no_link(selection_run, fake_hub, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(selection_run, out)
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (out / "report" / "notes.txt").write_text("my notes")
    (out / "report" / "link.txt").symlink_to(secret)
    (out / "report" / "scores.png").unlink()
    (out / "report" / "scores.png").symlink_to(secret)
    (out / "selected" / "data" / "extra.parquet").symlink_to(secret)
    (out / "selected" / "data" / "notes.txt").write_text("my notes")
    push_selection(out, "me/deita-selection")
    uploaded = fake_hub.instances[0].uploaded
    files = sorted(str(p.relative_to(uploaded)) for p in uploaded.rglob("*"))
    assert files == sorted(
        ["README.md", "data", "data/train-00000-of-00001.parquet", "report", "report/report.md"]
        + [f"report/{name}" for name in ("similarity.png", "score_rank.png", "turns.png")]
    )


def test_a_network_failure_in_report_push_is_one_line(selection_run, fake_hub, monkeypatch, capsys):
    def broken_upload(self, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(FakeHfApi, "upload_folder", broken_upload)
    assert main(["report", str(selection_run), "--push_to_hub", "me/x"]) == 1
    error = capsys.readouterr().err
    assert f"error: the push of {selection_run} to me/x failed (ConnectionError: Name or service not known)" in error
    assert "run the same command again to retry" in error and "Traceback" not in error
