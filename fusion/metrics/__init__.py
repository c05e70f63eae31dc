"""Fusion-quality metrics, one module per published evaluation protocol.

- :mod:`.cddfuse`: the protocol of the paper's evaluator (CDDFuse's ``Evaluator``): gray images,
  12 metrics, exact to 1e-5.
- :mod:`.vifb`: VIFB's 13 MATLAB metric functions, colour handled per channel as VIFB does.
- :mod:`.common`: what protocols share (reading images, Sobel responses).

A third protocol is a new module here. None of them needs the network or the trainer. The
names below are the CDDFuse protocol's, the default everywhere in crossfuse.
"""

from crossfuse.fusion.metrics.cddfuse import (NAMES, ag, all_metrics, cc, en, mi, mse, psnr, qabf, read_gray, scd, sd,
                                              sf, ssim, vif)

__all__ = ["NAMES", "ag", "all_metrics", "cc", "en", "mi", "mse", "psnr", "qabf", "read_gray", "scd", "sd", "sf",
           "ssim", "vif"]
