"""crossfuse: cross-sensor Top-K vision alignment of IR/VIS datasets, and the CrossFuse trainer.

The root package holds what both sides share and nothing heavy: the error types
(:mod:`crossfuse.errors`), dataset manifests (:mod:`crossfuse.manifest`), image decoding
(:mod:`crossfuse.imageio`) and the corpus store schema (:mod:`crossfuse.schema`).
The writer lives in :mod:`crossfuse.align`, the reader and trainer in :mod:`crossfuse.fusion`.
"""

__version__ = "0.1.0"
