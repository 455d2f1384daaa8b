"""Our OpenMP default is for our own threads: other programs we start get the caller's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = (
    "import json, os, workbench\n"
    "print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), workbench.foreign_env().get('OMP_WAIT_POLICY')]))\n"
)


def _probe(extra: dict[str, str]) -> list[str | None]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | extra
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_our_default_stays_out_of_other_programs() -> None:
    # llama.cpp's OpenMP build ran 2-thread decode 4x slower with PASSIVE leaked into it
    assert _probe({}) == ["PASSIVE", None]


def test_a_value_the_user_set_is_kept_and_passed_on() -> None:
    assert _probe({"OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "ACTIVE"]
    assert _probe({"OMP_WAIT_POLICY": "PASSIVE"}) == ["PASSIVE", "PASSIVE"]
