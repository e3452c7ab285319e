"""The errors of deita-hf.

Every problem a user can act on (a recipe or argument that cannot work, input rows or files that cannot be used,
a model that cannot be found, an output folder in the way) is a :class:`DeitaError`. The ``deita-hf`` command
prints its message in one line and exits with status 1; any other exception (a bug here, or an error raised
inside transformers, datasets or TRL) keeps its traceback. Each subclass also keeps the built-in class that
callers already catch (``ValueError`` for a bad value, ``FileNotFoundError`` for a missing file, ...).

>>> from deita_hf.errors import ConfigError, DeitaError
>>> isinstance(ConfigError("budget must be at least 1"), (DeitaError, ValueError))
True
"""

from __future__ import annotations


class DeitaError(Exception):
    """Base class of the errors that deita-hf raises for a problem the user can fix."""


class ConfigError(DeitaError, ValueError):
    """An option, recipe value or argument that cannot work (what is wrong and what to set instead)."""


class DataError(DeitaError, ValueError):
    """Input rows, files or folders whose content cannot be used (which one, and what is wrong)."""


class MissingFileError(DeitaError, FileNotFoundError):
    """A file or folder that the user named, or that a command needs, does not exist."""


class AccessError(DeitaError, PermissionError):
    """A file, folder or Hub repository that deita-hf may not read or write."""


class PipelineError(DeitaError, RuntimeError):
    """A problem with the run's inputs, settings or output folder that the user can fix."""
