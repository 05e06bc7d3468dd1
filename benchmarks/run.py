"""``make bench``: run every benchmark and print its figures (rows/s, peak memory).

Each benchmark is a script ``bench_*.py`` beside this one whose ``main()`` prints its figures
and returns non-zero when a stated target is not met. ``BENCH_PERSONS`` scales the estates.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    sys.path.insert(0, str(HERE))
    status = 0
    for script in sorted(HERE.glob("bench_*.py")):
        module = importlib.import_module(script.stem)
        print(f"== {script.stem}")
        status |= module.main()
    return status


if __name__ == "__main__":
    sys.exit(main())
