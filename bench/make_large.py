#!/usr/bin/env python3
"""Generate the "large binary files" data set of the Ferry benchmark.

Usage: make_large.py OUTDIR TOTAL_MIB KERNEL_TARBALL

Writes four files into OUTDIR whose sizes add up to about TOTAL_MIB MiB
(proportions 16:7:20:5 of 48, i.e. 1024 + 448 + 1280 + 320 MiB for 3072):

  random.bin  incompressible: the AES-256-CTR keystream of a fixed key and IV
              (`openssl enc -aes-256-ctr -nosalt -K <key> -iv <iv> < /dev/zero`),
              like already-compressed or encrypted media.  Identical on every
              machine with any OpenSSL.
  libs.bin    partly compressible machine code: the regular files
              /usr/lib/x86_64-linux-gnu/*.so* in byte order of their names,
              concatenated (repeated from the start if they are fewer than
              the wanted size, truncated otherwise).  Depends on the libraries
              installed on the machine; run.sh records its SHA-256.
  vm.img      a VM-disk-image-like sparse file, in 1 MiB extents chosen by a
              fixed-seed PRNG (random.Random(20240601)): 30 % holes (never
              written: sparse), 10 % written zeros, 35 % text (the next bytes of
              the decompressed linux-source tarball, i.e. files of a
              filesystem), 25 % PRNG bytes (encrypted/compressed data).
  db.bin      a database-like file of 8 KiB pages of fixed-layout rows (ids,
              timestamps, small integers, strings from a small vocabulary,
              free space zeroed), from a fixed-seed PRNG: compressible ~3-5x.

Everything but libs.bin depends only on this script and the kernel tarball.
"""
import os
import random
import struct
import subprocess
import sys
import zlib

MIB = 1 << 20
AES_KEY = "5eed" * 16  # 256-bit key, fixed
AES_IV = "1bad" * 8  # 128-bit IV, fixed


def write_random(path, size):
    """AES-256-CTR keystream of a fixed key: deterministic, incompressible."""
    with open(path, "wb") as out:
        enc = subprocess.Popen(
            ["openssl", "enc", "-aes-256-ctr", "-nosalt", "-K", AES_KEY, "-iv", AES_IV],
            stdin=open("/dev/zero", "rb"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        left = size
        while left:
            buf = enc.stdout.read(min(left, 4 * MIB))
            if not buf:
                raise SystemExit("openssl stopped early")
            out.write(buf)
            left -= len(buf)
        enc.kill()
        enc.wait()


def lib_files():
    d = "/usr/lib/x86_64-linux-gnu"
    names = sorted(n for n in os.listdir(d) if ".so" in n)
    return [os.path.join(d, n) for n in names
            if os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n))]


def write_libs(path, size):
    """Concatenated shared libraries (sorted by name), repeated/truncated to size."""
    files = lib_files()
    if not files:
        raise SystemExit("no shared libraries found")
    left = size
    with open(path, "wb") as out:
        while left:
            for f in files:
                with open(f, "rb") as src:
                    data = src.read(left)
                out.write(data)
                left -= len(data)
                if not left:
                    break


def write_vm(path, size, kernel_tarball):
    """Sparse VM-image-like file built from 1 MiB extents."""
    rng = random.Random(20240601)
    text = subprocess.Popen(["xz", "-dc", kernel_tarball], stdout=subprocess.PIPE)
    extents = size // MIB
    with open(path, "wb") as out:
        for i in range(extents):
            kind = rng.random()
            if kind < 0.30:  # hole: never written
                out.seek(MIB, os.SEEK_CUR)
            elif kind < 0.40:  # explicitly written zeros
                out.write(bytes(MIB))
            elif kind < 0.75:  # filesystem content: text
                buf = text.stdout.read(MIB)
                out.write(buf.ljust(MIB, b"\0"))
            else:  # encrypted/compressed content
                out.write(rng.randbytes(MIB))
        out.truncate(extents * MIB)  # the file ends with its last extent even if it is a hole
    text.kill()
    text.wait()


WORDS = [w.encode() for w in (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "pending shipped delivered cancelled refunded invoice order customer account payment").split()]


def write_db(path, size):
    """8 KiB pages of 64-byte rows; ~15 % of each page left as zeroed free space."""
    rng = random.Random(77)
    page_size = 8192
    row = struct.Struct("<QqIHH16s24s")  # id, timestamp, amount, status, flags, name, note
    assert row.size == 64
    rows_per_page = 108  # 108 * 64 = 6912 of 8192 - 32 header
    row_id = 1
    ts = 1_700_000_000_000
    with open(path, "wb") as out:
        for page_no in range(size // page_size):
            rows = []
            for _ in range(rows_per_page):
                ts += rng.randrange(1, 5000)
                name = b"-".join(rng.choice(WORDS) for _ in range(2))[:16]
                note = rng.randbytes(8).hex().encode() + rng.choice(WORDS)[:8]
                rows.append(row.pack(row_id, ts, rng.randrange(100000), rng.randrange(6),
                                     rng.randrange(4), name, note))
                row_id += 1
            body = b"".join(rows)
            header = struct.pack("<IIQ16x", page_no, zlib.crc32(body), row_id)
            out.write((header + body).ljust(page_size, b"\0"))


def main():
    outdir, total_mib, kernel_tarball = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(outdir, exist_ok=True)
    sizes = {name: total_mib * part // 48 * MIB
             for name, part in (("random.bin", 16), ("libs.bin", 7), ("vm.img", 20), ("db.bin", 5))}
    write_random(os.path.join(outdir, "random.bin"), sizes["random.bin"])
    write_libs(os.path.join(outdir, "libs.bin"), sizes["libs.bin"])
    write_vm(os.path.join(outdir, "vm.img"), sizes["vm.img"], kernel_tarball)
    write_db(os.path.join(outdir, "db.bin"), sizes["db.bin"])


if __name__ == "__main__":
    main()
