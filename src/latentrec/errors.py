"""One exception hierarchy; the CLI maps every LatentrecError to exit status 2."""


class LatentrecError(Exception):
    """Base class: its message is one clear sentence meant for a person."""


class DataError(LatentrecError):
    """A ratings or item file is missing, malformed or unusable."""


class DownloadError(LatentrecError):
    """A named dataset could not be fetched or failed verification."""


class ModelFileError(LatentrecError):
    """A model directory is missing, corrupt, inconsistent or of an unknown version."""


class ConfigError(LatentrecError):
    """An option or config value is out of range or inconsistent."""


class ModelCapabilityError(LatentrecError):
    """The model cannot answer this request (e.g. predicted ratings from a ranking-only model)."""
