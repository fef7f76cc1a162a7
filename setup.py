"""What pyproject.toml cannot say: the role folders (producers/, routers/, workers/, predictions/, state/) stay at
the top of the repository, where the layout shows the data flow, but install inside the core package as
dimee.producers, dimee.routers, …, so that dimee never claims a name such as `state` or `workers` in a user's
site-packages (docs/packaging.md)."""

from setuptools import find_packages, setup

ROLE_FOLDERS = ("producers", "routers", "workers", "predictions", "state")

role_packages = find_packages(include=[f"{folder}{tail}" for folder in ROLE_FOLDERS for tail in ("", ".*")])
setup(
    packages=find_packages(include=["dimee", "dimee.*"]) + [f"dimee.{name}" for name in role_packages],
    package_dir={f"dimee.{folder}": folder for folder in ROLE_FOLDERS},
)
