"""Run folders: inputs are never removed, damaged shards are recomputed, one writer per folder (docs/pipeline.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_from_disk
from test_pipeline import MODELS, SCORE_MODELS, as_rows, deita_cache, load_folder, pool_file, run_cli  # noqa: F401

SMALL = ["--max_rows", 16, "--shard_size", 4]
ARROW = "data-00000-of-00001.arrow"


@pytest.fixture(scope="module")
def finished_score(pool_file, tmp_path_factory) -> Path:  # noqa: F811
    """A finished `deita-hf score` of 16 rows in 4 shards, shards kept."""
    out = tmp_path_factory.mktemp("score") / "out"
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", out, *SCORE_MODELS, *SMALL,
                   "--keep_shards") == 0  # fmt: skip
    return out


def unfinished(finished: Path, out: Path) -> Path:
    """What a run killed after its last shard leaves: the shards only."""
    shutil.copytree(finished, out)
    for name in ("summary.json", "recipe.yaml", "pool", "pool.parquet"):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out / "shards" / "score"


def resume(pool: Path, out: Path, *extra: str) -> int:
    return run_cli(
        "score", "--dataset_name", pool, "--output_dir", out, *SCORE_MODELS, *SMALL, "--keep_shards", *extra
    )


# -- --overwrite never removes the input --------------------------------------------------------------------------
def test_an_input_inside_the_output_folder_is_refused_before_anything_is_removed(finished_score, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished_score, out)
    before = sorted(p.name for p in out.iterdir())
    assert run_cli("embed", "--dataset_name", out / "pool", "--output_dir", out, *MODELS[4:6], "--overwrite") == 1
    assert "is the output pool of --output_dir" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert len(load_folder(out / "pool")) == 16


def test_an_input_file_named_like_an_output_is_never_deleted(pool_file, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(pool_file, data / "pool.jsonl")
    assert run_cli("score", "--dataset_name", data / "pool.jsonl", "--output_dir", data, *SCORE_MODELS,
                   "--overwrite") == 1  # fmt: skip
    assert "is the output pool.jsonl of --output_dir" in capsys.readouterr().err
    assert (data / "pool.jsonl").read_text() == pool_file.read_text()


def test_overwrite_in_a_folder_of_other_files_replaces_none_of_them(pool_file, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "recipe.yaml").write_text("mine: true\n")
    assert resume(pool_file, out, "--overwrite") == 1
    assert "holds recipe.yaml, which deita-hf did not write" in capsys.readouterr().err
    assert (out / "recipe.yaml").read_text() == "mine: true\n"


def test_overwrite_of_a_finished_run_removes_only_the_files_it_wrote(finished_score, pool_file, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    shutil.copytree(finished_score, out)
    assert json.loads((out / "summary.json").read_text())["files"] == [
        "pool", "pool.parquet", "recipe.yaml", "summary.json"
    ]  # fmt: skip
    (out / "notes.txt").write_text("kept")
    (out / "selected.jsonl").write_text("not written by the run in this folder")
    assert resume(pool_file, out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "kept"
    assert (out / "selected.jsonl").read_text() == "not written by the run in this folder"


# -- damaged run folders ------------------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 64, len(data) - 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_a_score(shard: Path) -> None:
    """One deita_score set to 99.0, written back as a valid shard of the same shape."""
    from datasets import Dataset

    rows = load_from_disk(str(shard)).to_dict()
    rows["deita_score"][0] = 99.0
    meta = (shard / "shard.json").read_text()
    tmp = shard.with_name("edited")
    Dataset.from_dict(rows).save_to_disk(str(tmp))
    shutil.rmtree(shard)
    tmp.rename(shard)
    (shard / "shard.json").write_text(meta)


DAMAGE = {
    "truncated arrow file": lambda shard: _truncate(shard / ARROW),
    "flipped bytes in the arrow file": lambda shard: _flip_bytes(shard / ARROW),
    "an edited score": _edit_a_score,
    "missing arrow file": lambda shard: (shard / ARROW).unlink(),
    "missing state.json": lambda shard: (shard / "state.json").unlink(),
    "truncated dataset_info.json": lambda shard: _truncate(shard / "dataset_info.json"),
    "truncated shard.json": lambda shard: _truncate(shard / "shard.json"),
    "missing shard.json": lambda shard: (shard / "shard.json").unlink(),
    "shard.json of another row count": lambda shard: (shard / "shard.json").write_text(
        json.dumps({**json.loads((shard / "shard.json").read_text()), "rows": 3})
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_shard_is_recomputed_and_said(finished_score, pool_file, tmp_path, caplog, capsys, damage):  # noqa: F811
    shards = unfinished(finished_score, tmp_path / "out")
    expected = as_rows(finished_score / "pool")
    untouched = (shards / "00002" / "shard.json").stat().st_mtime_ns
    DAMAGE[damage](shards / "00001")
    assert resume(pool_file, tmp_path / "out") == 0
    assert as_rows(tmp_path / "out" / "pool") == expected
    assert (shards / "00002" / "shard.json").stat().st_mtime_ns == untouched
    said = caplog.text + capsys.readouterr().err
    assert f"{shards / '00001'} is damaged" in said and "computing rows 4..7 again" in said


@pytest.mark.parametrize(
    "damage, message",
    [
        (_truncate, "plan.json is damaged"),
        (lambda path: path.write_text("[]"), "plan.json is damaged (expected a JSON object, got list)"),
        (lambda path: path.unlink(), "holds shards but no plan.json"),
    ],
    ids=["truncated", "not an object", "missing"],
)
def test_a_damaged_plan_stops_naming_the_file_and_overwrite_recovers(
    finished_score,
    pool_file,  # noqa: F811
    tmp_path,
    capsys,
    damage,
    message,
):
    shards = unfinished(finished_score, tmp_path / "out")
    damage(shards / "plan.json")
    assert resume(pool_file, tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert message in error and str(shards) in error and "with --overwrite" in error
    assert resume(pool_file, tmp_path / "out", "--overwrite") == 0
    assert as_rows(tmp_path / "out" / "pool") == as_rows(finished_score / "pool")


def test_overwrite_recovers_from_a_damaged_summary(finished_score, pool_file, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    shutil.copytree(finished_score, out)
    _truncate(out / "summary.json")
    assert resume(pool_file, out, "--overwrite") == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["pool"] == 16


# -- one writer per folder ----------------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_folder_names_the_holder(pool_file, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
            "open(sys.argv[1], 'w').write('pid 4242 on node7: deita-hf run --config a.yaml'); print('held', "
            "flush=True); time.sleep(60)"
        ), str(out / ".deita_hf.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert resume(pool_file, out) == 1
    finally:
        holder.kill()
        holder.wait()
    error = capsys.readouterr().err
    assert f"another deita-hf run is writing in {out} (pid 4242 on node7: deita-hf run --config a.yaml)" in error
    assert sorted(p.name for p in out.iterdir()) == [".deita_hf.lock"]
    assert resume(pool_file, out) == 0
    assert not (out / ".deita_hf.lock").exists()


# -- inputs that are earlier outputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("stored", ["save_to_disk", "parquet"])  # a dataset, or Parquet read in place
def test_select_on_an_earlier_selection_replaces_its_similarity_column(tmp_path, caplog, capsys, stored):
    from datasets import Dataset

    rows = {
        "prompt": ["a", "b", "c", "d"],
        "response": ["w", "x", "y", "z"],
        "deita_score": [4.0, 3.0, 2.0, 1.0],
        "embedding": [[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [-1.0, 0.2]],
        "nearest_selected_similarity": [0.5, 0.5, 0.5, 0.5],
    }
    if stored == "parquet":
        earlier = tmp_path / "earlier.parquet"
        Dataset.from_dict(rows).to_parquet(str(earlier))
    else:
        earlier = tmp_path / "earlier"
        Dataset.from_dict(rows).save_to_disk(str(earlier))
    assert run_cli("select", "--dataset_name", earlier, "--output_dir", tmp_path / "out",
                   "--budget", 3) == 0  # fmt: skip
    selected = load_folder(tmp_path / "out" / "selected")
    assert selected["prompt"] == ["a", "b", "d"]
    assert selected.column_names.count("nearest_selected_similarity") == 1
    assert selected["nearest_selected_similarity"][1] == pytest.approx(0.0)
    assert "this run replaces them" in caplog.text + capsys.readouterr().err


# -- the machine's limits -----------------------------------------------------------------------------------------
def test_a_full_disk_says_the_space_needed_and_that_rerunning_resumes(pool_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    import errno

    import deita_hf.pipeline.shards as shards

    write_shard = shards._write_shard

    def disk_fills_at_shard_2(folder, k, *args):
        if k == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / f".{k:05d}.tmp-1"))
        write_shard(folder, k, *args)

    monkeypatch.setattr(shards, "_write_shard", disk_fills_at_shard_2)
    out = tmp_path / "out"
    assert resume(pool_file, out) == 1
    error = capsys.readouterr().err
    assert "error: the disk is full while writing" in error and "(No space left on device)" in error
    assert "run the same command again: it resumes from the finished shards" in error
    needed, unit = error.split("the run needs about ")[1].split()[:2]
    assert float(needed) > 0 and unit in ("KB", "MB") and " are free now" in error
    assert "OSError" not in error and "Errno" not in error
    monkeypatch.setattr(shards, "_write_shard", write_shard)
    done = (out / "shards" / "score" / "00001" / "shard.json").stat().st_mtime_ns
    assert resume(pool_file, out) == 0
    assert (out / "shards" / "score" / "00001" / "shard.json").stat().st_mtime_ns == done


def test_a_read_only_output_folder_is_one_line(pool_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    import errno

    import deita_hf.pipeline.shards as shards

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(shards, "_write_text_atomic", read_only)
    assert resume(pool_file, tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert f"error: cannot write {tmp_path / 'out' / 'shards' / 'score' / 'plan.json'}: Read-only file system" in error
    assert "choose another --output_dir" in error


def test_a_device_that_is_not_there_is_one_line_before_any_work(pool_file, tmp_path, capsys):  # noqa: F811
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resume(pool_file, tmp_path / "out", "--device", f"cuda:{count + 7}") == 1
    error = capsys.readouterr().err
    expected = "has no CUDA GPU" if count == 0 else f"has {count} CUDA GPU(s)"
    assert f"error: --device 'cuda:{count + 7}': this machine {expected}" in error
    assert not (tmp_path / "out").exists()
