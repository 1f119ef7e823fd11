"""What every benchmark does with its markdown: print it, write it to the results file, or
put it in the README between its markers."""

from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], results: str) -> str:
    """Join ``lines`` into the markdown, print it, write it to ``results`` ('' = print only)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if results:
        Path(results).write_text(text)
    return text


def replace_marked(path: Path, name: str, content: str) -> None:
    """Write ``content`` between ``path``'s ``<!-- name -->`` and ``<!-- /name -->`` lines
    (atomically; every other line kept), blank lines around it so Markdown reads a table as a
    table. SystemExit naming the file and the marker when they are not there exactly once."""
    from gumbel_rerank.durable import write_atomic

    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SystemExit(f"{path}: needs one {start} line before one {end} line")
    head, rest = text.split(start)
    write_atomic(path, f"{head}{start}\n\n{content}\n\n{end}{rest.split(end)[1]}")
