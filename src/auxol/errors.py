"""Errors a user can act on.

Every error raised for bad input derives from :class:`AuxolError`. Its message is one
line that names the file (or option) and the problem; the command line prints it
without a traceback and exits with status 2.
"""


class AuxolError(Exception):
    """Base class of errors caused by the user's input, not by a bug."""


class DataError(AuxolError):
    """An image, mask, volume, CSV list or folder cannot be used."""


class PromptError(AuxolError):
    """A prompt is malformed or lies outside its image."""


class WeightsError(AuxolError):
    """Model weights are missing, corrupt or belong to another architecture."""


class ConfigError(AuxolError):
    """A configuration value or combination of options is invalid."""
