"""What must be on disk before anything names it: a file's bytes, a folder's entries.

A rename or a ledger commit that names a file is durable only once the file's bytes and the
folder entry holding its name are on disk; otherwise a power cut can leave a name with no file
behind it, or a file the bank sees whole that the disk does not hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from allowance.errors import LedgerBusy


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


@contextlib.contextmanager
def folder_lock(folder: Path, wait_seconds: float | None = None) -> Iterator[bool]:
    """An exclusive lock on an output folder (flock of the folder itself: no file is added to
    it), held by a publication from staging its files to their rename. Every ledger publishing
    there takes it, so it also holds between two ledgers that share a folder (a copied or a
    restored ledger), which the ledger's own lock cannot. With `wait_seconds` None, yields at once
    whether the lock was taken; otherwise waits up to that long for it, then raises LedgerBusy
    (found by an audit: a publication waited for it forever, holding its ledger meanwhile). The
    folder is made if need be (an OSError if it cannot be)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + (wait_seconds or 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait_seconds is None:
                    yield False
                    return
                if time.monotonic() > deadline:
                    raise LedgerBusy(f"{folder}: another publication is writing to this folder; try again later"
                                     ) from None
                time.sleep(0.2)
        yield True
    finally:
        os.close(fd)
