"""Writing files so that a crash, a full disk or a closed laptop never leaves half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomically(path, write: Callable[[Path], object]) -> None:
    """Have `write` fill a temporary file, then rename it to `path`: the file is replaced
    only after a full write, so a crash never leaves half a file (a previous version of it
    stays intact). An OSError names the path."""
    path = Path(path)
    # Beside the target, so os.replace is a rename on one file system and never half-done.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(f"Cannot save {path}: {error}") from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text_atomically(path, text: str) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
