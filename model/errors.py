"""The one error type for bad input data."""


class DataError(ValueError):
    """Bad input data. The message names the file, the item and what is wrong, in one line."""
