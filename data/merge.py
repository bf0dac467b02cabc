"""Merge manifests into one, so a model trains on several generated sets at once.

    python -m framestamp.data.merge OUT.jsonl IN.jsonl [IN.jsonl ...]

Audio paths are relative to their manifest's folder, so each is rewritten relative to OUT's folder
(absolute paths and generator lines are kept as they are). Each id gains its manifest's folder name
as a prefix (``noisy/synth/...``): sets generated alike reuse ids.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from framestamp.runtime.errors import InputError


def merge_manifests(out: str | Path, inputs: list[str | Path]) -> int:
    """Write the lines of every input manifest to ``out``; returns the number of lines."""
    from framestamp.data.manifest import read_manifest, write_manifest

    out = Path(out)
    merged, seen = [], {}
    for source in map(Path, inputs):
        for example in read_manifest(source):
            example = dataclasses.replace(example, id=f"{source.parent.name}/{example.id}")
            if example.id in seen:
                raise InputError(f"id {example.id!r} is in both {seen[example.id]} and {source}; ids must be unique")
            seen[example.id] = source
            if example.audio is not None and not Path(example.audio).is_absolute():
                moved = os.path.relpath(source.parent / example.audio, out.parent)
                example = dataclasses.replace(example, audio=Path(moved).as_posix())
            merged.append(example)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_manifest(out, merged)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    count = merge_manifests(argv[0], argv[1:])
    print(f"wrote {count} lines to {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
