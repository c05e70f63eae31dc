"""Published results to show next to an experiment's own: CDDFuse (Zhao et al., CVPR 2023, whose
code and evaluator the CrossFuse paper reuses), Table 1 of its paper, as quoted in
../shared/reference/README.md. Same protocol as ``crossfuse eval``; EN SD SF MI SCD VIF Qabf SSIM."""

from __future__ import annotations

METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")

PUBLISHED: dict[str, dict[str, float]] = {
    name: dict(zip(METRICS, values)) for name, values in {
        "TNO": (7.12, 46.00, 13.15, 2.19, 1.76, 0.77, 0.54, 1.03),
        "RoadScene": (7.44, 54.67, 16.36, 2.30, 1.81, 0.69, 0.52, 0.98),
        "MSRS": (6.70, 43.38, 11.56, 3.47, 1.62, 1.05, 0.69, 1.00),
    }.items()
}

#: How the published rows are labelled in results.md.
SOURCE = "CDDFuse (CVPR 2023), published"
