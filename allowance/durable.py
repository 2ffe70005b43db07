"""What must be on disk before anything names it: a file's bytes, a folder's entries.

A rename or a ledger commit that names a file is durable only once the file's bytes and the
folder entry holding its name are on disk; otherwise a power cut can leave a name with no file
behind it, or a file the bank sees whole that the disk does not hold.
"""

from __future__ import annotations

import os
from pathlib import Path


def sync(path: Path) -> None:
    """fsync one file or folder (a folder: its entries, the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """Every file under `folder`, then every folder in it (deepest first) and `folder` itself."""
    files, folders = [], []
    for p in sorted(folder.rglob("*")):
        (files if p.is_file() else folders).append(p)
    for p in [*files, *reversed(folders), folder]:
        sync(p)
