"""Errors a user can act on.

Every message names the problem and the fix. The CLI prints ``str(error)`` as a
single line on stderr and exits 1; nothing below the CLI prints.
"""


class CharlmError(Exception):
    """Base class for every error charlm reports to a user."""


class ConfigError(CharlmError):
    """An option or setting is out of range."""


class CorpusError(CharlmError):
    """A corpus cannot be found, read or used."""


class TokenizerError(CharlmError):
    """Text cannot be encoded with the model's vocabulary."""


class CheckpointError(CharlmError):
    """A checkpoint folder is missing, incomplete, corrupted or incompatible."""


class DeviceError(CharlmError):
    """The requested device is not available."""
