"""The wheel a user installs: the role folders ship inside dimee (setup.py), so a site-packages that holds dimee
holds no top-level `state`, `workers`, `routers`, `producers` or `predictions` to collide with a user's own."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLE_FOLDERS = ("producers", "routers", "workers", "predictions", "state")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the built wheel; the dependencies come from this venv's site-packages through a
    plain path entry (not a site dir, so this venv's editable install of dimee is not loaded there)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(ROOT)], check=True)
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    purelib = next(env_dir.glob("lib/python*/site-packages"))
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheel = next((tmp / "dist").glob("dimee-*.whl"))
    # --target, not --prefix: pip would first uninstall this venv's own (editable) dimee.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(purelib), str(wheel)], check=True)
    return env_dir


def _run(env_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=env_dir,
                          env={"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin"})


def test_the_installed_command_runs(installed: Path) -> None:
    # The console script pip wrote (into the target's bin/), run by the fresh venv's python: its first line
    # names this outer interpreter.
    script = next(installed.glob("lib/python*/site-packages/bin/dimee"))
    out = _run(installed, str(installed / "bin" / "python"), str(script), "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "dimee 0.1.0"


@pytest.mark.parametrize("name", ROLE_FOLDERS)
def test_no_role_folder_is_a_top_level_name(installed: Path, name: str) -> None:
    python = str(installed / "bin" / "python")
    assert _run(installed, python, "-c", f"import {name}").returncode != 0
    found = _run(installed, python, "-c", f"import dimee.{name} as m; print(m.__file__)")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip().startswith(str(installed)), found.stdout  # the wheel's copy, not this checkout


def test_the_image_copies_what_the_package_is_built_from() -> None:
    """deploy/Dockerfile runs `pip install .`: it needs setup.py (which maps the role folders) and every folder."""
    copies = [line.split()[1:-1] for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ")]
    copied = {source for sources in copies for source in sources}
    assert {"pyproject.toml", "setup.py", "dimee", *ROLE_FOLDERS} <= copied


def test_the_image_runs_as_the_non_root_user_the_chart_names() -> None:
    """A pod without the chart's securityContext (compose, a plain `docker run`) must not run as root either."""
    import yaml

    users = [line.split()[1] for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
             if line.startswith("USER ")]
    assert users, "the image runs as root"
    context = yaml.safe_load((ROOT / "deploy" / "helm" / "dimee" / "values.yaml").read_text())["podSecurityContext"]
    assert users[-1] == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert context["runAsUser"] != 0
