"""``crossfuse``: train, fuse and evaluate (the commands arrive with their issues)."""

from __future__ import annotations

import click

from crossfuse import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crossfuse")
def main() -> None:
    """CrossFuse infrared-visible image fusion: train on corpora built by `crossfuse-align`."""
