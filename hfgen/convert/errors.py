"""The converters' error (importable without torch)."""


class ConversionError(ValueError):
    """A source checkpoint that cannot be converted faithfully (unknown, missing or misshaped tensors, unsafe pickles)."""
