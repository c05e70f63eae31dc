"""Command-line interface: thin click commands over :mod:`crossfuse.align` and :mod:`crossfuse.fusion`."""
