"""OpenMP's idle threads sleep rather than spin (issue 17: spinning starved a shared 2-core CPU)."""

from __future__ import annotations

import os
import subprocess
import sys


def _policy(env: dict[str, str]) -> str:
    code = "import workbench, torch, os; torch.ones(4).sum(); print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_passive_by_default_and_the_users_choice_wins() -> None:
    base = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    assert _policy(base) == "PASSIVE"
    assert _policy(base | {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
