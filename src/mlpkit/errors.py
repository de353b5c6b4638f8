"""The exceptions mlpkit raises on purpose.

Every error a user can cause derives from :class:`MlpkitError`, so the CLI can turn it into one
line on stderr and an exit code, while programming errors (a bug in mlpkit) still show a traceback.
Most also derive from the builtin a caller would expect (``ValueError``, ``OSError``), so
``except ValueError`` keeps working in library code.
"""

from __future__ import annotations


class MlpkitError(Exception):
    """Base class of every error mlpkit raises on purpose."""


class ConfigError(MlpkitError, ValueError):
    """A configuration value, file or command-line option is invalid."""


class DataFormatError(MlpkitError, ValueError):
    """Input data is malformed: wrong shape, NaN/inf, corrupted or truncated file, bad labels."""


class ChecksumError(DataFormatError):
    """A file's content does not match its published checksum."""


class DataNotFoundError(MlpkitError, FileNotFoundError):
    """A data set could not be found anywhere it was looked for, nor downloaded."""


class CheckpointError(MlpkitError, ValueError):
    """A checkpoint or saved run is missing, corrupted, or does not fit the model."""


class TrainingDivergedError(MlpkitError, FloatingPointError):
    """The training loss became NaN or infinite."""


class OutputError(MlpkitError, OSError):
    """An output location cannot be written."""


class MissingDependencyError(MlpkitError, ImportError):
    """An optional package that a feature needs is not installed; the message names the extra."""
