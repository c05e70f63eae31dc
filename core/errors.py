"""Error types. Each is rooted in a built-in so callers can catch what they expect.

Messages say what was received, where, and what to do about it.
"""

from __future__ import annotations


class CrossfuseError(Exception):
    """Mixin marking errors raised deliberately by crossfuse (the CLI prints them cleanly)."""


class ManifestError(CrossfuseError, ValueError):
    """A manifest or dataset folder cannot be understood."""


class PairError(CrossfuseError, ValueError):
    """One image pair cannot be used: unreadable, truncated, missing partner, size or checksum.

    ``pair_id`` and ``path`` name the culprit so that ``--skip-bad`` can record it.
    """

    def __init__(self, message: str, *, pair_id: str, path: str) -> None:
        super().__init__(message)
        self.pair_id = pair_id
        self.path = path

    def __reduce__(self):  # keyword-only fields survive pickling to and from Dask workers
        return (_make_pair_error, (str(self), self.pair_id, self.path))


def _make_pair_error(message: str, pair_id: str, path: str) -> PairError:
    return PairError(message, pair_id=pair_id, path=path)


class ImageError(CrossfuseError, ValueError):
    """An image file that cannot be used: not an image, truncated, not 8-bit, or too large."""


class EngineError(CrossfuseError, RuntimeError):
    """The Dask cluster failed under a build (scheduler gone, no worker left); the store stays
    resumable."""


class ParameterError(CrossfuseError, ValueError):
    """Parameters that cannot work with the data (K larger than the pool, patch too large...)."""


class StoreError(CrossfuseError, ValueError):
    """A corpus store is incomplete, of an unknown schema, or does not match what it claims."""


class StoreLockedError(StoreError):
    """Another build is writing the same store (or took it over while this one ran)."""


class WriteError(CrossfuseError, OSError):
    """An output could not be written (a full disk, a file-size limit); nothing was left
    half-written under its name."""


class RunLockedError(CrossfuseError, RuntimeError):
    """Another process is training in the same run folder."""


class OutputExistsError(CrossfuseError, FileExistsError):
    """An output (run folder, fused image, manifest, score file) already exists and replacing it
    was not asked for."""


class StoreExistsError(OutputExistsError):
    """The output corpus store already exists and replacing it was not asked for."""


class ConfigError(CrossfuseError, ValueError):
    """A training configuration file or flag that cannot be used."""


class CheckpointError(CrossfuseError, ValueError):
    """A checkpoint file that cannot be read, is not a CrossFuse checkpoint, or would hold
    non-finite weights."""


class TrainingDiverged(CrossfuseError, RuntimeError):
    """Too many consecutive steps skipped for a NaN or infinite loss or gradient."""


class FuseError(CrossfuseError, ValueError):
    """A fuse that cannot go ahead as asked (a folder fused with other settings)."""


class EvalError(CrossfuseError, ValueError):
    """A fused image that is missing or does not match its source pair."""
