#!/usr/bin/env python3
"""Writes assets/fashion-mnist/: a class-balanced Fashion-MNIST subset in the original IDX (.gz)
format for the bundled demo (configs/demo.toml). Standard library only.

    python3 tools/make_demo_data.py [/usr/share/datasets/fashion-mnist] [assets/fashion-mnist]

Per class it keeps the first TRAIN_PER_CLASS training and TEST_PER_CLASS test images in the
dataset's own order (so the subset is the same on every machine), written with gzip mtime 0 so
the files are byte-identical on every run.
"""
import gzip
import struct
import sys
from pathlib import Path

TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def write_idx(path, magic, dims, payload):
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(header + payload)


def subset(src, dst, prefix, per_class):
    (n, h, w), images = read_idx(src / f"{prefix}-images-idx3-ubyte.gz")
    (n_labels,), labels = read_idx(src / f"{prefix}-labels-idx1-ubyte.gz")
    assert n == n_labels, (n, n_labels)
    taken, keep = [0] * 10, []
    for i, y in enumerate(labels):
        if taken[y] < per_class:
            taken[y] += 1
            keep.append(i)
    size = h * w
    img = b"".join(images[i * size:(i + 1) * size] for i in keep)
    lab = bytes(labels[i] for i in keep)
    write_idx(dst / f"{prefix}-images-idx3-ubyte.gz", 0x0803, (len(keep), h, w), img)
    write_idx(dst / f"{prefix}-labels-idx1-ubyte.gz", 0x0801, (len(keep),), lab)
    print(f"{prefix}: {len(keep)} images, {taken} per class")


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
    dst = Path(sys.argv[2] if len(sys.argv) > 2 else "assets/fashion-mnist")
    dst.mkdir(parents=True, exist_ok=True)
    subset(src, dst, "train", TRAIN_PER_CLASS)
    subset(src, dst, "t10k", TEST_PER_CLASS)


if __name__ == "__main__":
    main()
