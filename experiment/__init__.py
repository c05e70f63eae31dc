"""Experiments: the paper's protocol as one spec (``crossfuse experiment SPEC.toml``). The one
place that drives both ``crossfuse.align`` (corpora) and ``crossfuse.fusion`` (training, fusing,
scoring), which never import each other."""
