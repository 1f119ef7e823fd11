"""What every benchmark does with its markdown: print it, and write it to the results file."""

from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], results: str) -> str:
    """Join ``lines`` into the markdown, print it, write it to ``results`` ('' = print only)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if results:
        Path(results).write_text(text)
    return text
