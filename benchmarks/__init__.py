"""framestamp.benchmarks"""

import os
import platform


def machine_facts(**versions: str) -> dict:
    """What a result was measured on: the CPU, its cores, Python, the given library versions, and the
    load average when the measurement ended (other jobs on the machine move the numbers)."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), **versions, "load_average_after": os.getloadavg()[0]}
