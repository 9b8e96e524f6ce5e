"""Pack onnxruntime-gpu for one GPU architecture small enough to carry, and rebuild it there.

    python bench/gpu_bundle.py pack onnxruntime_gpu-1.30.0-cp312-...whl OUTDIR [--arch 90]
    python bench/gpu_bundle.py unpack OUTDIR SITE      # on the GPU machine; SITE goes on PYTHONPATH

Why: a lent GPU machine that cannot reach a package index takes at most 64 MiB of carried
files, and the onnxruntime-gpu wheel is 247 MB, nearly all of it
`libonnxruntime_providers_cuda.so` (272 MB, of which 211 MB is the `.nv_fatbin` section: the
kernels compiled for sm_75, 80, 86, 89, 90 and 120, each one zstd-compressed). A machine runs
the kernels of its own architecture only (sm_90 on an H100 or H200), so `pack` keeps those and
blanks the others' bytes (their fatbin headers stay, so no offset in the library moves and the
CUDA runtime still finds its sm_90 image). Compressed one kernel file at a time the sm_90
images take 75 MB; `pack` stores them decompressed and packs them together with xz (19 MB:
many images repeat the same templated code), and `unpack` compresses each one again with zstd
level 19, which is what the wheel's build used (checked: byte-identical), so the library
rebuilt there is the wheel's own with the other architectures blanked. `unpack` prints the
rebuilt library's SHA-256 beside the one `pack` computed; they match when the zstd there makes
the same bytes. `libonnxruntime.so` (the C API library, which the Python module does not load)
is left out. Needs `zstandard` (pip) to pack, `xz` on the PATH, and zstandard or pyarrow to unpack.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

CUDA_LIB = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
LEFT_OUT = ("onnxruntime/capi/libonnxruntime.so",)
FATBIN_MAGIC = 0xBA55ED50
ZSTD_LEVEL = 19  # the level the wheel's fatbin entries were compressed with


@dataclass(frozen=True)
class Entry:
    """One kernel image in the fatbin: where its payload lies in the library and its sizes."""

    header: int  # offset of the entry header in the file
    payload: int  # offset of its payload
    padded: int  # bytes reserved for the payload
    compressed: int  # bytes of zstd frame in it
    size: int  # bytes once decompressed
    arch: int  # 90 for sm_90


def _section(data: bytes, name: bytes) -> tuple[int, int]:
    """File offset and size of an ELF64 section, read from the section headers."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab = shoff + shstrndx * shentsize
    str_off, = struct.unpack_from("<Q", data, strtab + 0x18)
    for i in range(shnum):
        base = shoff + i * shentsize
        name_off, = struct.unpack_from("<I", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off:end] == name:
            return offset, size
    raise SystemExit(f"no {name.decode()} section")


def entries(data: bytes) -> Iterator[Entry]:
    """Every kernel image in `.nv_fatbin` (a run of fatbins, each a header and its entries)."""
    pos, size = _section(data, b".nv_fatbin")
    end = pos + size
    while pos < end:
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # alignment padding between fatbins
            continue
        entry, fat_end = pos + header_size, pos + header_size + fat_size
        while entry < fat_end:
            _, _, ehs, padded, compressed = struct.unpack_from("<HHIQI", data, entry)
            arch, = struct.unpack_from("<I", data, entry + 28)
            size, = struct.unpack_from("<Q", data, entry + 56)
            yield Entry(entry, entry + ehs, padded, compressed, size, arch)
            entry += ehs + padded
        pos = fat_end


def pack(wheel: Path, out: Path, arch: int) -> None:
    import zstandard

    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        lib = bytearray(zf.read(CUDA_LIB))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for info in zf.infolist():
                if info.filename == CUDA_LIB or info.filename.startswith(LEFT_OUT) or info.is_dir():
                    continue
                item = tarfile.TarInfo(info.filename)
                item.size, item.mode = info.file_size, 0o755 if info.filename.endswith(".so") else 0o644
                tar.addfile(item, io.BytesIO(zf.read(info)))
            kept: list[Entry] = []
            blob = bytearray()
            decompressor = zstandard.ZstdDecompressor()
            target = bytearray(lib)
            for e in entries(bytes(lib)):
                if e.arch == arch:
                    kept.append(e)
                    blob += decompressor.decompress(bytes(lib[e.payload:e.payload + e.compressed]), max_output_size=e.size)
                else:
                    target[e.payload:e.payload + e.padded] = bytes(e.padded)
                lib[e.payload:e.payload + e.padded] = bytes(e.padded)
            item = tarfile.TarInfo(CUDA_LIB)
            item.size, item.mode = len(lib), 0o755
            tar.addfile(item, io.BytesIO(bytes(lib)))
    (out / "ort.tar.xz").write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    (out / f"sm{arch}.bin").write_bytes(blob)
    # xz with a dictionary that spans most of the images: 19 MB (zstd -19 --long=31 made 24 MB)
    subprocess.run(["xz", "-f", "-T1", "--lzma2=preset=9e,dict=384MiB", str(out / f"sm{arch}.bin")], check=True)
    index = {"arch": arch, "wheel": wheel.name, "sha256": hashlib.sha256(target).hexdigest(),
             "entries": [asdict(e) for e in kept]}
    (out / "index.json").write_text(json.dumps(index))
    print(f"{len(kept)} sm_{arch} images, {len(blob)} bytes decompressed; {CUDA_LIB} sha256 {index['sha256']}")


def _compress(raw: bytes) -> bytes:
    try:
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(raw))
    except ImportError:
        import pyarrow  # its zstd codec writes the frame the same way (ZSTD_compress)

        return bytes(pyarrow.Codec("zstd", compression_level=ZSTD_LEVEL).compress(raw, asbytes=True))


def unpack(bundle: Path, site: Path) -> int:
    index = json.loads((bundle / "index.json").read_text())
    site.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle / "ort.tar.xz") as tar:
        tar.extractall(site, filter="data")
    path = site / CUDA_LIB
    lib = bytearray(path.read_bytes())
    blob = lzma.decompress((bundle / f"sm{index['arch']}.bin.xz").read_bytes())
    kept = [Entry(**e) for e in index["entries"]]
    raws, pos = [], 0
    for e in kept:
        raws.append(blob[pos:pos + e.size])
        pos += e.size
    with ProcessPoolExecutor() as pool:
        frames = list(pool.map(_compress, raws, chunksize=8))
    different = 0
    for e, frame in zip(kept, frames):
        if len(frame) > e.padded:
            print(f"image at {e.payload}: {len(frame)} bytes compressed, room for {e.padded}", file=sys.stderr)
            return 1
        different += len(frame) != e.compressed
        lib[e.payload:e.payload + e.padded] = frame + bytes(e.padded - len(frame))
        struct.pack_into("<I", lib, e.header + 16, len(frame))
    path.write_bytes(lib)
    digest = hashlib.sha256(lib).hexdigest()
    same = digest == index["sha256"]
    print(f"rebuilt {path}: {len(kept)} sm_{index['arch']} images ({different} of another length than the wheel's); "
          f"sha256 {digest} {'matches' if same else 'DIFFERS from'} the wheel's with the other architectures blanked")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("wheel", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--arch", type=int, default=90)
    u = sub.add_parser("unpack")
    u.add_argument("bundle", type=Path)
    u.add_argument("site", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        if shutil.which("xz") is None:
            raise SystemExit("xz is not on the PATH")
        pack(args.wheel, args.out, args.arch)
        return 0
    return unpack(args.bundle, args.site)


if __name__ == "__main__":
    sys.exit(main())
