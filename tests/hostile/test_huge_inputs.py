"""Huge inputs are read in bounded memory: the peak does not grow from a 50 MB to a 200 MB input.

Each reading happens in a fresh process that reports its own peak resident memory. The full-size
cases (a 1 GB accounting log, a 100,000-job qstat) are in ``bench/huge_inputs.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.huge import fake_qstat, measure_in_child, write_accounting, write_qstat

SMALL, LARGE = 50 << 20, 200 << 20
#: Allowed growth of the peak between the two sizes (allocator noise, not proportional growth:
#: holding the large input would add 200 MiB, holding a fixed share of it tens of MiB).
GROWTH_MIB = 12


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("huge")
    made: dict[str, Path] = {}
    for label, size in (("small", SMALL), ("large", LARGE)):
        made[f"acct-{label}"] = root / f"acct-{label}" / "20261125"
        write_accounting(made[f"acct-{label}"], size)
        made[f"endless-{label}"] = root / f"endless-{label}" / "20261125"
        write_accounting(made[f"endless-{label}"], size, newlines=False)
        # The same 2,000 jobs; only their variable lists grow, as with "qsub -V" on a big environment.
        xml = root / f"qstat-{label}.xml"
        write_qstat(xml, 2000, variables=size // 2000)
        made[f"qstat-{label}"] = fake_qstat(root / f"torque-{label}", xml)
    yield made
    shutil.rmtree(root)  # 750 MB: not left for pytest to keep with its last runs


@pytest.mark.parametrize("kind,name", [("parse_file", "acct"), ("tailer", "acct"),
                                       ("parse_file", "endless"), ("tailer", "endless"),
                                       ("qstat", "qstat")])
def test_peak_memory_does_not_grow_with_the_input(inputs, kind, name):
    small = measure_in_child(kind, inputs[f"{name}-small"])
    large = measure_in_child(kind, inputs[f"{name}-large"])
    if name == "acct":
        assert large["records"] == 4 * small["records"] > 0 and large["bad"] == 0
    elif name == "endless":
        assert small["records"] == large["records"] == 0 and small["bad"] == large["bad"] == 1
    else:
        assert small["jobs"] == large["jobs"] == 2000 and large["queued"] == 1000
    growth = large["peak_mib"] - small["peak_mib"]
    assert growth < GROWTH_MIB, f"{kind} {name}: {small} -> {large}"
    # And nothing near the input's size is ever held: 200 MiB read, a few MiB above the baseline.
    assert large["peak_mib"] - large["baseline_mib"] < 40, large
