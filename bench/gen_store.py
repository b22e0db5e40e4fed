#!/usr/bin/env python3
"""Write a registration (nix-store --load-db format) for N small paths, and their files.

Usage: gen_store.py ROOT N GROUP
Creates ROOT/nix/store/<hash>-p<i> files and prints the registration on stdout. Paths are
grouped: within each group of GROUP paths, path i references path i-1 (a chain), so the graph
has edges; with GROUP = N it is one chain whose head's closure is everything.
"""
import hashlib
import os
import random
import sys

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"


def nar_of_regular(data: bytes) -> bytes:
    def s(b: bytes) -> bytes:
        pad = (8 - len(b) % 8) % 8
        return len(b).to_bytes(8, "little") + b + b"\0" * pad

    return b"".join(s(t) for t in [b"nix-archive-1", b"(", b"type", b"regular", b"contents", data, b")"])


def main() -> None:
    root, n, group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(42)
    store = os.path.join(root, "nix", "store")
    os.makedirs(store, exist_ok=True)
    paths = []
    for i in range(n):
        h = "".join(rng.choice(ALPHABET) for _ in range(32))
        paths.append(f"/nix/store/{h}-p{i}")
    out = sys.stdout
    for i, p in enumerate(paths):
        data = f"path {i}\n".encode()
        real = os.path.join(root, p.lstrip("/"))
        with open(real, "wb") as f:
            f.write(data)
        os.chmod(real, 0o444)
        os.utime(real, (1, 1))
        nar = nar_of_regular(data)
        refs = [paths[i - 1]] if i % group != 0 else []
        out.write(f"{p}\n{hashlib.sha256(nar).hexdigest()}\n{len(nar)}\n\n{len(refs)}\n")
        for r in refs:
            out.write(f"{r}\n")


if __name__ == "__main__":
    main()
