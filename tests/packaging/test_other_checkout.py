"""The benchmark's before/after (`--code DIR`) runs the other checkout's roles, not this one's."""

import subprocess
import sys

from benchmarks.processes import checkout_env


def test_another_checkout_imports_its_own_role_folders(tmp_path):
    other = tmp_path / "before"
    (other / "dimee").mkdir(parents=True)
    (other / "dimee" / "__init__.py").write_text("WHICH = 'before'\n")
    (other / "workers").mkdir()
    (other / "workers" / "__init__.py").write_text("WHICH = 'before'\n")
    (other / "setup.py").write_text('ROLE_FOLDERS = ("producers", "workers")\nsetup()\n')  # no producers/: skipped
    env = checkout_env(other, tmp_path / "layout")
    code = "import dimee, dimee.workers; print(dimee.WHICH, dimee.workers.WHICH)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=other,
                         env={**env, "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["before", "before"], out.stderr
    assert checkout_env(other, tmp_path / "layout") == env  # a second role of the run reuses the layout
