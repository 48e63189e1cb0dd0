"""Where the command line writes: results on stdout, progress and errors on stderr.

Tables and summaries go to ``out`` so that they can be piped; spinners, warnings,
``error: ...`` and ``hint: ...`` lines go to ``err``.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["err", "human_bytes", "out"]

out = Console()
err = Console(stderr=True)


def human_bytes(n: int) -> str:
    """``512 B``, ``1.5 KB``, ``3.2 MB``: byte counts as people read them."""
    size: float = n
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
