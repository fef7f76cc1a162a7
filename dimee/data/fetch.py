"""Download the real datasets that the reachable package registries carry (DESIGN.md section 4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from dimee.errors import DataError

RT_PACKAGE = "vaderSentiment==3.3.2"
RT_FILE = "movieReviewSnippets_GroundTruth.txt"
UCI_PACKAGE = "sentiment@5.0.2"
UCI_DOMAINS = ("amazon", "imdb", "yelp")


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise DataError(f"cannot fetch {what}: `{cmd[0]}` is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise DataError(f"cannot fetch {what}: `{' '.join(cmd)}` timed out (no network?)") from exc
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise DataError(f"cannot fetch {what}: `{' '.join(cmd)}` failed: {reason}")


def _only_member(archive: tarfile.TarFile, suffix: str, what: str) -> tarfile.TarInfo:
    members = [m for m in archive.getmembers() if m.name.endswith(suffix)]
    if not members:
        raise DataError(f"cannot fetch {what}: the archive has no {suffix}")
    return members[0]


def fetch_rt_sentences(data_dir: Path) -> Path:
    """10,605 Rotten Tomatoes sentences with mean human ratings, from the vaderSentiment sdist."""
    target = data_dir / "rt-sentences" / RT_FILE
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             RT_PACKAGE, "-d", str(tmp_path)],
            tmp_path,
            "rt-sentences",
        )
        sdists = list(tmp_path.glob("vaderSentiment-*.tar.gz"))
        if not sdists:
            raise DataError("cannot fetch rt-sentences: pip downloaded no vaderSentiment sdist")
        with tarfile.open(sdists[0]) as sdist:
            inner = _only_member(sdist, "hutto_ICWSM_2014.tar.gz", "rt-sentences")
            inner_file = sdist.extractfile(inner)
            if inner_file is None:
                raise DataError("cannot fetch rt-sentences: unreadable inner archive")
            with tarfile.open(fileobj=inner_file) as resources:
                member = _only_member(resources, RT_FILE, "rt-sentences")
                source = resources.extractfile(member)
                if source is None:
                    raise DataError("cannot fetch rt-sentences: unreadable ground-truth file")
                partial = target.with_suffix(".partial")
                partial.write_bytes(source.read())
                partial.replace(target)
    return target


def fetch_uci_sentences(data_dir: Path) -> Path:
    """3,000 labelled review sentences (amazon, imdb, yelp) from the npm package `sentiment`."""
    target_dir = data_dir / "uci-sentences"
    if all((target_dir / f"{d}.json").exists() for d in UCI_DOMAINS):
        return target_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        _run(["npm", "pack", "--silent", UCI_PACKAGE], tmp_path, "uci-sentences")
        tarballs = list(tmp_path.glob("sentiment-*.tgz"))
        if not tarballs:
            raise DataError("cannot fetch uci-sentences: npm produced no tarball")
        with tarfile.open(tarballs[0]) as package:
            for domain in UCI_DOMAINS:
                member = _only_member(package, f"test/fixtures/{domain}.json", "uci-sentences")
                source = package.extractfile(member)
                if source is None:
                    raise DataError(f"cannot fetch uci-sentences: unreadable {domain}.json")
                payload = source.read()
                json.loads(payload)  # refuse to store a file we could not parse later
                (target_dir / f"{domain}.json").write_bytes(payload)
    return target_dir


FETCHERS = {"rt-sentences": fetch_rt_sentences, "uci-sentences": fetch_uci_sentences}


def fetch(name: str, data_dir: Path) -> Path:
    if name not in FETCHERS:
        raise DataError(f"no fetcher for {name!r}: choose one of {', '.join(FETCHERS)}")
    return FETCHERS[name](data_dir)


def remove(name: str, data_dir: Path) -> None:
    shutil.rmtree(data_dir / name, ignore_errors=True)
