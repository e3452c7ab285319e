"""The settings of one ``deita-hf score | embed | select | run``: the parsed argument groups of the recipe, routed
by type and checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import (
    DataArguments,
    EmbeddingArguments,
    HubArguments,
    RuntimeArguments,
    ScoringArguments,
    SelectionArguments,
)
from ..errors import ConfigError, PipelineError

COMMANDS = ("score", "embed", "select", "run")


@dataclass
class RunConfig:
    """One command with its argument groups (``None`` for a group the command does not read).

    ``groups`` are the groups as parsed, in order: ``recipe.yaml`` holds exactly their fields.
    """

    command: str
    data: DataArguments
    runtime: RuntimeArguments = field(default_factory=RuntimeArguments)
    scoring: ScoringArguments | None = None
    embedding: EmbeddingArguments | None = None
    selection: SelectionArguments | None = None
    hub: HubArguments | None = None
    command_line: str | None = None
    groups: tuple[Any, ...] = ()

    @classmethod
    def from_groups(cls, command: str, groups: tuple[Any, ...], command_line: str | None = None) -> RunConfig:
        """Route parsed argument groups by type and check them (:meth:`check`)."""
        if command not in COMMANDS:
            raise ConfigError(f"unknown command {command!r}; expected one of {COMMANDS}")
        by_type = {type(group): group for group in groups}
        if DataArguments not in by_type:
            raise ConfigError(f"`deita-hf {command}` needs its DataArguments (dataset_name, output_dir, ...)")
        config = cls(
            command=command,
            data=by_type[DataArguments],
            runtime=by_type.get(RuntimeArguments) or RuntimeArguments(),
            scoring=by_type.get(ScoringArguments),
            embedding=by_type.get(EmbeddingArguments),
            selection=by_type.get(SelectionArguments),
            hub=by_type.get(HubArguments),
            command_line=command_line,
            groups=tuple(groups),
        )
        config.check()
        return config

    def check(self) -> None:
        """Refuse settings that cannot work, before hours of scoring rather than after."""
        data = self.data
        if not data.dataset_name:
            raise PipelineError("set the input with --dataset_name (or dataset_name: in the recipe)")
        if not data.output_dir:
            raise PipelineError("set the output folder with --output_dir")
        if data.shard_size < 1:
            raise PipelineError(f"--shard_size must be at least 1, got {data.shard_size}")
        if data.max_rows is not None and data.max_rows < 1:
            raise PipelineError(f"--max_rows must be at least 1, got {data.max_rows}")
        if self.hub is not None and self.hub.push_to_hub:
            from huggingface_hub import get_token

            if get_token() is None:
                raise PipelineError(
                    f"--push_to_hub {self.hub.push_to_hub} needs a Hugging Face token: log in with `hf auth login` "
                    "or set the HF_TOKEN environment variable"
                )
        if self.runtime.device is not None:
            from ..modeling import check_device

            try:
                check_device(self.runtime.device)
            except ValueError as error:
                raise PipelineError(f"--{error}") from None
        if self.selection is not None:
            if self.selection.budget is None or self.selection.budget < 1:
                raise PipelineError("set how many rows to select with --budget (at least 1)")
            from ..selection import check_threshold

            check_threshold(self.selection.threshold, "--threshold")
