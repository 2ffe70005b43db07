"""`python -m allowance.cli` runs the same CLI as the `allowance` command (audit 25B: it failed, no
`__main__`)."""

import subprocess
import sys
from pathlib import Path


def test_python_m_allowance_cli_is_the_allowance_command() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "allowance.cli", "rules", "--help"], cwd=root,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage: python -m allowance.cli rules" in done.stdout, done.stdout
