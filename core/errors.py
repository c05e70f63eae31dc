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


class ParameterError(CrossfuseError, ValueError):
    """Parameters that cannot work with the data (K larger than the pool, patch too large...)."""


class StoreError(CrossfuseError, ValueError):
    """A corpus store is incomplete, of an unknown schema, or does not match what it claims."""


class StoreExistsError(CrossfuseError, FileExistsError):
    """The output store already exists and replacing it was not asked for."""
