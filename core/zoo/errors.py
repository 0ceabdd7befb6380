"""Errors of the model zoo, each worded so the user knows the next command to run."""


class ZooError(RuntimeError):
    """Base class for model-zoo problems."""


class ModelNotFoundError(ZooError):
    """A model reference points at nothing that can be loaded here."""


class UnsafeWeightsError(ZooError):
    """Weights in a format that could run code when loaded (pickle) were refused."""
