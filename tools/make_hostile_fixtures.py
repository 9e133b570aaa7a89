"""Crafted hostile inputs for tests/hostile.rs (issue 14): small files that, read naively, crash
or exhaust the machine. Each is a few KB to a few hundred KB and must give a clear error.

Usage: python3 tools/make_hostile_fixtures.py [OUT]   (default tests/fixtures/hostile)
Needs only the Python standard library; byte-reproducible (fixed zip timestamps, gzip mtime 0).
"""

import gzip
import io
import json
import os
import pickle
import struct
import sys
import zipfile
import zlib

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "hostile")
STAMP = (2020, 1, 1, 0, 0, 0)


def torch_zip(path, pkl, storages, deflate=()):
    """A torch.save-style zip: archive/data.pkl, archive/data/<key>, archive/version."""
    with zipfile.ZipFile(path, "w") as z:
        def put(name, data, compress):
            info = zipfile.ZipInfo(name, STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            z.writestr(info, data)

        put("archive/data.pkl", pkl, "data.pkl" in deflate)
        for key, data in storages.items():
            put(f"archive/data/{key}", data, key in deflate)
        put("archive/version", b"3\n", False)


def tensor_pickle(tensors):
    """Protocol-2 pickle of {name: tensor} as torch.save writes it, with each tensor given as
    (storage key, storage numel, offset, shape, stride): a REDUCE of
    torch._utils._rebuild_tensor_v2 over a persistent-id storage (written by hand so that the
    views can be ones torch itself would refuse to make)."""
    out = io.BytesIO()
    w = out.write

    def short_str(s):
        b = s.encode()
        w(b"X" + struct.pack("<I", len(b)) + b)

    def int_(i):
        w(b"\x8a\x08" + struct.pack("<q", i))  # LONG1, 8 bytes

    def tuple_(items):
        w(b"(")
        for i in items:
            int_(i)
        w(b"t")

    w(b"\x80\x02")
    w(b"ccollections\nOrderedDict\n)R")  # OrderedDict()
    w(b"(")
    for name, (key, numel, offset, shape, stride) in tensors.items():
        short_str(name)
        w(b"ctorch._utils\n_rebuild_tensor_v2\n")
        w(b"(")  # args
        # persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
        w(b"(")
        short_str("storage")
        w(b"ctorch\nFloatStorage\n")
        short_str(key)
        short_str("cpu")
        int_(numel)
        w(b"tQ")
        int_(offset)
        tuple_(shape)
        tuple_(stride)
        w(b"\x89")  # requires_grad False
        w(b"ccollections\nOrderedDict\n)R")
        w(b"tR")
    w(b"u.")
    return out.getvalue()


def pickle_bomb():
    """x = []; 48 times: x = (x, x) via memo GET. 20 bytes per level, 2^48 leaves if copied."""
    b = bytearray(b"\x80\x02]q\x00")
    for _ in range(48):
        b += b"h\x00h\x00\x86q\x000"  # GET 0, GET 0, TUPLE2, PUT 0, POP
    b += b"h\x00."
    return bytes(b)


def pickle_deep(depth):
    """`depth` empty lists pushed, then APPENDed into each other: nesting `depth` deep."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def make_torch_files():
    one = struct.pack("<f", 1.0)
    # a stride-0 (expanded) view: 2^40 elements over a single stored float
    torch_zip(
        f"{OUT}/stride0_view.pth",
        tensor_pickle({"w": ("0", 1, 0, [1 << 20, 1 << 20], [0, 0])}),
        {"0": one},
    )
    # shape × stride overflows 64 bits
    torch_zip(
        f"{OUT}/stride_overflow.pth",
        tensor_pickle({"w": ("0", 1, 0, [4, 4], [1 << 62, 1 << 62])}),
        {"0": one},
    )
    # 256 MiB of zeros, deflated to about 256 KiB, as the storage of a 64 M-element tensor
    zeros = bytes(256 << 20)
    torch_zip(
        f"{OUT}/zip_bomb.pth",
        tensor_pickle({"w": ("0", 64 << 20, 0, [64 << 20], [1])}),
        {"0": zeros},
        deflate=("0",),
    )
    torch_zip(f"{OUT}/pickle_bomb.pth", pickle_bomb(), {})
    torch_zip(f"{OUT}/pickle_deep.pth", pickle_deep(100_000), {})


def make_safetensors():
    # header length 2^60
    with open(f"{OUT}/huge_header.safetensors", "wb") as f:
        f.write(struct.pack("<Q", 1 << 60) + b"{}")
    # a tensor whose shape claims far more bytes than its offsets and the file hold
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 4]}})
    header = header.encode()
    with open(f"{OUT}/huge_shape.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0))


def idx_header(magic, dims):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)


def make_idx():
    # images header claims 2^31-1 × 65535 × 65535 bytes; the file holds 16
    d = f"{OUT}/idx_huge"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/train-images-idx3-ubyte", "wb") as f:
        f.write(idx_header(0x0803, [0x7FFFFFFF, 0xFFFF, 0xFFFF]) + bytes(16))
    with open(f"{d}/train-labels-idx1-ubyte", "wb") as f:
        f.write(idx_header(0x0801, [2]) + bytes(2))
    # a gzip bomb: header says 10 images of 28×28, the stream inflates to 512 MiB
    d = f"{OUT}/idx_gzip_bomb"
    os.makedirs(d, exist_ok=True)
    body = idx_header(0x0803, [10, 28, 28]) + bytes(512 << 20)
    with open(f"{d}/train-images-idx3-ubyte.gz", "wb") as f:
        f.write(gzip.compress(body, compresslevel=9, mtime=0))
    with open(f"{d}/train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(gzip.compress(idx_header(0x0801, [10]) + bytes(10), mtime=0))


def make_cifar():
    # a batch whose length is not a whole number of 3073-byte records
    d = f"{OUT}/cifar_ragged"
    os.makedirs(d, exist_ok=True)
    for i in range(1, 6):
        with open(f"{d}/data_batch_{i}.bin", "wb") as f:
            f.write(bytes(3073 * 2 + 100))
    with open(f"{d}/test_batch.bin", "wb") as f:
        f.write(bytes(3073))


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_images():
    # an image folder with one real 2×2 PNG and one whose header claims 100 000 × 100 000
    for cls, w, h in (("ok", 2, 2), ("huge", 100_000, 100_000)):
        d = f"{OUT}/images/{cls}"
        os.makedirs(d, exist_ok=True)
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grey
        rows = (b"\x00" + bytes(w)) * h if w * h <= 4 else b"\x00" * 1024
        png = (
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b"")
        )
        with open(f"{d}/{cls}.png", "wb") as f:
            f.write(png)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make_torch_files()
    make_safetensors()
    make_idx()
    make_cifar()
    make_images()
    for root, _, files in sorted(os.walk(OUT)):
        for name in sorted(files):
            p = os.path.join(root, name)
            print(f"{os.path.getsize(p):>9} {p}")
