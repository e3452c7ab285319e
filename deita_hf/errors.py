"""deita_hf.errors."""

from __future__ import annotations


class PipelineError(RuntimeError):
    """A problem with the run's inputs, settings or output folder that the user can fix."""
