"""Seed inputs for the cargo-fuzz targets (fuzz/seeds/<target>/): one or two valid inputs per
target, taken from the test fixtures and the bundled assets. Usage: python3 tools/make_fuzz_seeds.py
Needs only the Python standard library; byte-reproducible."""

import gzip
import os
import shutil
import struct
import sys
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from make_hostile_fixtures import tensor_pickle  # noqa: E402

SEEDS = os.path.join("fuzz", "seeds")
FIX = os.path.join("tests", "fixtures")


def seed(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


def main():
    with zipfile.ZipFile(os.path.join(FIX, "mae_prenorm.pth")) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        seed("pickle", "mae_prenorm.pkl", z.read(pkl))
    # views of the harness's storages 0–3 (1, 4, 16, 64 floats): strided, offset, expanded
    seed("torch_zip", "views.pkl", tensor_pickle({
        "a": ("2", 16, 1, [3, 4], [4, 1]),
        "b": ("3", 64, 0, [4, 4, 4], [1, 4, 16]),
        "c": ("0", 1, 0, [5, 5], [0, 0]),
    }))
    for name in ("refined_prenorm.th",):
        seed("checkpoint", name, open(os.path.join(FIX, name), "rb").read())
    seed("safetensors", "timm_layerscale.safetensors",
         open(os.path.join(FIX, "timm_layerscale.safetensors"), "rb").read())
    header = struct.pack(">IIII", 0x0803, 2, 4, 4)
    seed("idx", "two_4x4", header + bytes(range(32)))
    seed("idx", "two_4x4.gz", gzip.compress(header + bytes(range(32)), mtime=0))
    seed("cifar", "two_records", bytes([3] + [7] * 3072 + [9] + [1] * 3072))
    seed("runlog", "events.jsonl", open(os.path.join(FIX, "run_small", "events.jsonl"), "rb").read())
    for cfg in ("demo.toml", "demo_mae.toml"):
        seed("config", cfg, open(os.path.join("configs", cfg), "rb").read())


if __name__ == "__main__":
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    main()
    for root, _, files in sorted(os.walk(SEEDS)):
        for f in sorted(files):
            p = os.path.join(root, f)
            print(f"{os.path.getsize(p):>8} {p}")
