"""The wheel ships what the installed package needs: card templates, the smoke sample."""

import subprocess
import sys
import zipfile

import pytest


@pytest.mark.slow
def test_the_wheel_ships_the_card_templates_and_the_smoke_sample(tmp_path):
    from conftest import REPO_ROOT

    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--verbose",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("deita_hf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"deita_hf/templates/model_card.md", "deita_hf/templates/dataset_card.md"} <= names
    assert "deita_hf/data/alpaca_eval_sample.jsonl" in names
    assert "deita_hf/data/alpaca_eval_prefs_sample.jsonl" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    # The packaging is declared the current way: setuptools has nothing to warn about.
    log = build.stdout.decode() + build.stderr.decode()
    for warning in ("BuildBackendWarning", "SetuptoolsDeprecationWarning", "deprecated", "absent from the `packages`"):
        assert warning not in log
    assert "deita_hf/cli.py" in names
    assert {"deita_hf/pipeline/run.py", "deita_hf/scorers/data.py", "deita_hf/training/sft.py"} <= names
    # Test code does not ship as a module of its own: the reference scorer lives in deita_hf/testing.py.
    assert "deita_hf/reference.py" not in names and "deita_hf/tiny.py" not in names
