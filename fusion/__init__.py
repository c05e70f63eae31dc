"""The CrossFuse network, losses, corpus loader, trainer, inference and metrics.

Reads corpora through :mod:`crossfuse.schema`; never imports dask, FAISS or :mod:`crossfuse.align`.
"""
