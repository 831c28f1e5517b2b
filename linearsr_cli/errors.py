"""The project's exception types. Domain code raises these; the CLI maps them to exit codes."""


class LinearSRError(Exception):
    """Base class of every error LinearSR raises on purpose."""


class WeightsError(LinearSRError):
    """A weights or checkpoint file is missing, foreign, truncated or does not match."""


class ConfigError(LinearSRError):
    """A configuration value is out of range or inconsistent."""


class ImageReadError(LinearSRError):
    """An input image cannot be decoded (corrupt, truncated, not an image, too large)."""


class ImageWriteError(LinearSRError):
    """An output image cannot be written."""


class DeviceError(LinearSRError):
    """The requested device or dtype is not available."""


class TagError(LinearSRError):
    """Tags cannot be produced or read (tagger/encoder missing, bad sidecar)."""


class TrainingError(LinearSRError):
    """Training cannot start or continue (no data, diverged, bad resume state)."""
