"""framestamp.benchmarks"""

import json
import os
import platform
from pathlib import Path


def machine_facts(**versions: str) -> dict:
    """What a result was measured on: the CPU, its cores, Python, the given library versions, and the
    load average when the measurement ended (other jobs on the machine move the numbers)."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), **versions, "load_average_after": os.getloadavg()[0]}


def write_report(out: Path, stem: str, text: str, record: dict) -> None:
    """OUT/STEM.md (the printed table) and OUT/STEM.json (``record``), each written atomically."""
    from framestamp.runtime.files import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{stem}.md") as path:
        path.write_text(text)
    with atomic_path(out / f"{stem}.json") as path:
        path.write_text(json.dumps(record, indent=2) + "\n")


def write_table_and_chart(out: Path, stem: str, text: str, draw) -> None:
    """OUT/STEM.md (the printed table) and OUT/STEM.png (``draw(path)``), each written atomically."""
    from framestamp.runtime.files import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{stem}.md") as path:
        path.write_text(text)
    with atomic_path(out / f"{stem}.png") as path:
        draw(path)
