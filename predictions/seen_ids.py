"""The sink's record of which prediction ids it has written, for deduplication that survives restarts
without holding the whole history in memory: a SQLite index beside the JSONL file (SQLite pages come and
go through a bounded cache), or, without a file, the most recent ids in memory."""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

RECENT_IDS = 1_000_000  # the in-memory index keeps this many (a run without a file)


Seen = dict[str, str | None]  # id → the sample's content digest, where the prediction carried one


class RecentIds:
    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity, self._ids = capacity, OrderedDict[str, str | None]()

    def __len__(self) -> int:
        return len(self._ids)

    def known(self, ids: Iterable[str]) -> Seen:
        return {i: self._ids[i] for i in ids if i in self._ids}

    def add(self, seen: Seen, written_up_to: int = 0) -> None:
        for sample_id, digest in seen.items():
            self._ids[sample_id] = digest
            self._ids.move_to_end(sample_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def close(self) -> None:
        pass


class IndexedJsonl:
    """Ids of the lines of one JSONL file, in `FILE.ids.sqlite`, with how far into the file they reach. On
    open, a torn last line (a crash mid-write: its offset was never committed, so it comes again) is cut off
    and any lines the index has not seen yet are indexed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path.with_name(path.name + ".ids.sqlite"), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, digest TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS progress (single INTEGER PRIMARY KEY, offset INTEGER)")
        self._cut_torn_line()
        self._catch_up()

    def _indexed_up_to(self) -> int:
        row = self.db.execute("SELECT offset FROM progress WHERE single = 0").fetchone()
        return row[0] if row else 0

    def _cut_torn_line(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(end)

    def _catch_up(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self._indexed_up_to())
            rows = [json.loads(line) for line in handle if line.strip()]
            self.add({row["id"]: row.get("digest") for row in rows}, handle.tell())

    def known(self, ids: Iterable[str]) -> Seen:
        wanted = list(dict.fromkeys(ids))
        found: Seen = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT id, digest FROM seen WHERE id IN ({marks})", chunk).fetchall())
        return found

    def add(self, seen: Seen, written_up_to: int) -> None:
        with self.db:  # one transaction: the ids and how far into the file they reach
            self.db.executemany("INSERT OR IGNORE INTO seen (id, digest) VALUES (?, ?)", list(seen.items()))
            self.db.execute("INSERT OR REPLACE INTO progress (single, offset) VALUES (0, ?)", (written_up_to,))

    def close(self) -> None:
        self.db.close()
