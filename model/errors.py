"""The error types for bad input: data files, values, settings (the CLI prints them as one line)."""


class DataError(ValueError):
    """Bad input data. The message names the file, the item and what is wrong, in one line."""


class ConfigError(DataError):
    """A bad preset or override: the message names the key and what is wrong, in one line."""
