"""The ``deita-hf`` pipeline: load a pool, score and embed it in resumable shards, select, write the outputs.

Data flows one way::

    input rows -> shards/score/*, shards/embed/* -> pool/ -> selection -> selected/, export, report/, card

Resumable: scoring and embedding write fixed-size row shards (``output_dir/shards/<step>/<k>/``), each one a
``save_to_disk`` folder written under a temporary name and renamed when complete. A run killed at any point
and started again with the same command finds the finished shards, checks that they were computed from the
same rows with the same settings, and computes only the others.

Distributed: under ``torchrun`` / ``accelerate launch`` shard ``k`` is computed by process ``k mod N``; the
main process merges the shards in order after a barrier, so the result equals a single-process run row for row.

>>> from deita_hf.config import parse_recipe, COMMAND_ARGUMENTS
>>> groups = parse_recipe(["--config", "recipes/smoke/select.yaml"], COMMAND_ARGUMENTS["run"])  # doctest: +SKIP
>>> summary = run_command("run", *groups)  # doctest: +SKIP
"""

from .run import run_command

__all__ = ["run_command"]
