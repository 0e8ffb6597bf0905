"""The services' shared runtime set-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.common.ops import YOUNG_COLLECTION_THRESHOLD


def test_a_settled_heap_keeps_start_up_out_of_scans_and_collects_young_objects_less_often() -> (
    None
):
    # In a process of its own: freezing the test runner's heap would change it for
    # every later test.
    script = (
        "import gc\n"
        "from services.common.ops import settle_heap\n"
        "before = gc.get_threshold()\n"
        "settle_heap()\n"
        "print(*before, *gc.get_threshold(), gc.get_freeze_count() > 0)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    default, default_middle, default_old, young, middle, old, frozen = found
    assert int(default) < YOUNG_COLLECTION_THRESHOLD == int(young)
    assert (middle, old) == (default_middle, default_old)  # the older ones keep CPython's
    assert frozen == "True"
