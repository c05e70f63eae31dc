"""Training loader throughput: our chunk-wise Zarr loader against the release's pattern (an HDF5
file with one dataset per patch, opened and closed for every item).

    python -m benchmarks.loader [--repeats 3]

Needs h5py (bench-only). Builds RoadScene x MSRS (K=800) into a temporary corpus, writes the same
patches as HDF5, and times one epoch of (visible Y, infrared) float batches of 8 through each
path: ours streaming from Zarr, ours in memory, and the release's per-item HDF5 reads. Prints one
JSON line with patches/s (median of the repeats), the ratios, and what a full-model training step
on this CPU consumes (measured here too).
Ours delivers uint8 batches and the trainer converts them on its device; the row
``ours_in_memory_with_cpu_conversion`` adds that conversion on the CPU, as a CPU run does it.
The process keeps freed memory (``fusion.runtime.keep_freed_memory``), as ``crossfuse train`` does.
"""

from __future__ import annotations

import argparse
import json
import os

import h5py
import numpy as np
import torch

from benchmarks.common import MANIFESTS, machine, median_seconds, scratch_dir
from crossfuse import corpus, manifest
from crossfuse.align import build
from crossfuse.corpus.reading import LUMA, Corpora, PatchBatches, to_model_inputs
from crossfuse.fusion.runtime import keep_freed_memory


class ReleasedH5(torch.utils.data.Dataset):
    """The release's loader: open the file, read one patch, close, per item."""

    def __init__(self, path: str) -> None:
        with h5py.File(path, "r") as f:
            self.keys = list(f["vis"].keys())
        self.path = path

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int):
        with h5py.File(self.path, "r") as f:
            vis = np.array(f["vis"][self.keys[i]], dtype=np.float32)
            ir = np.array(f["ir"][self.keys[i]], dtype=np.float32)
        y = (LUMA[0] * vis[0] + LUMA[1] * vis[1] + LUMA[2] * vis[2])[None] / 255.0
        return torch.from_numpy(y), torch.from_numpy(ir / 255.0)


def _training_step_seconds() -> float:
    """Median seconds of one full-model training step (batch 8, 64x64, phase II, the default
    channels_last fp32 path): what the loader must keep up with on this machine."""
    from benchmarks.network_cpu import CL, train_step
    from crossfuse.fusion.config import TrainConfig
    from crossfuse.fusion.network import CrossFuse

    torch.manual_seed(0)
    cfg = TrainConfig()
    model = CrossFuse(cfg.network).train()
    vis, ir = torch.rand(8, 1, 64, 64), torch.rand(8, 1, 64, 64)
    step = lambda: train_step(model, vis, ir, phase=2, layout=CL, bf16=False, cfg=cfg)  # noqa: E731
    step()
    return median_seconds(step, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    keep_freed_memory()  # as `crossfuse train` runs; the same for every path timed here
    with scratch_dir() as tmp:
        store = os.path.join(tmp, "c.zarr")
        build(target=manifest.load(str(MANIFESTS / "roadscene.json")), aux=manifest.load(str(MANIFESTS / "msrs.json")),
              out=store)
        import zarr

        g = zarr.open_group(store, mode="r")
        vis, ir = g["vis"][...], g["ir"][...]
        h5 = os.path.join(tmp, "c.h5")
        with h5py.File(h5, "w") as f:
            for i in range(len(vis)):
                f.create_dataset(f"vis/{i}", data=vis[i])
                f.create_dataset(f"ir/{i}", data=ir[i])
        n = (len(vis) // 8) * 8

        datasets = {mem: PatchBatches(Corpora([store], in_memory=mem), batch_size=8, seed=0) for mem in (False, True)}
        epochs = {False: 0, True: 0}

        def ours(in_memory: bool, convert: bool = False) -> None:  # one epoch; handles open once, as in training
            ds = datasets[in_memory]
            epochs[in_memory] += 1
            ds.set_epoch(epochs[in_memory])
            for vis, ir in ds:
                if convert:
                    to_model_inputs(vis, ir)

        released_loader = torch.utils.data.DataLoader(ReleasedH5(h5), batch_size=8, shuffle=True, drop_last=True)

        def released() -> None:
            for _ in released_loader:
                pass

        # The trainer's own path, before (its own DataLoader over PatchBatches) and since issue 21
        # (crossfuse.corpus.PatchLoader, fields vis and ir), both streaming from Zarr.
        direct = torch.utils.data.DataLoader(PatchBatches(Corpora([store], in_memory=False), batch_size=8, seed=0),
                                             batch_size=None)
        public = corpus.PatchLoader([store], batch_size=8, seed=0, fields=("vis", "ir"), in_memory=False)
        turns = {"direct": 0, "public": 0}

        def trainer_path(which: str) -> None:
            turns[which] += 1
            if which == "direct":
                direct.dataset.set_epoch(turns[which])
                for vis, ir in direct:
                    pass
            else:
                public.set_epoch(turns[which])
                for batch in public:
                    pass

        ours(False), ours(True), trainer_path("direct"), trainer_path("public")  # warm: handles, in-memory copy
        rates = {"ours_zarr_streaming": n / median_seconds(lambda: ours(False), args.repeats),
                 "ours_in_memory": n / median_seconds(lambda: ours(True), args.repeats),
                 "ours_in_memory_with_cpu_conversion": n / median_seconds(lambda: ours(True, True), args.repeats),
                 "released_h5_per_item": n / median_seconds(released, args.repeats),
                 "trainer_direct_dataloader": n / median_seconds(lambda: trainer_path("direct"), args.repeats),
                 "trainer_public_patchloader": n / median_seconds(lambda: trainer_path("public"), args.repeats)}
    out = {k + "_patches_per_s": round(v) for k, v in rates.items()}
    out["streaming_over_released"] = round(rates["ours_zarr_streaming"] / rates["released_h5_per_item"], 1)
    out["in_memory_over_released"] = round(rates["ours_in_memory"] / rates["released_h5_per_item"], 1)
    out["in_memory_with_cpu_conversion_over_released"] = round(
        rates["ours_in_memory_with_cpu_conversion"] / rates["released_h5_per_item"], 1)
    out["public_over_direct"] = round(rates["trainer_public_patchloader"] / rates["trainer_direct_dataloader"], 2)
    out["cpu_training_step_consumes_patches_per_s"] = round(8 / _training_step_seconds(), 1)
    print(json.dumps({"command": "python -m benchmarks.loader", "machine": machine(), "patches": n, **out}))


if __name__ == "__main__":
    main()
