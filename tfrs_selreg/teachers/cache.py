"""The persistent result cache of the scoring job: what makes reruns free and kills harmless.

A teacher's answer to a request is stored under ``Teacher.cache_key(request)`` (teacher name, model,
template version and the hash of everything the teacher saw), so a changed prompt, model or scoring
rule never reuses an old answer.

Layout: a cache folder (``OUT/cache/`` or ``--cache-dir``) of append-only JSON-lines shard files,
``shard-<host>-<pid>-<random>.jsonl``, one per writer (one per Beam worker DoFn instance), so writers
never share a file. Each result is one line, written with one ``write`` and flushed at once: a job
killed half-way keeps every result it had finished. A new writer always opens a new shard, so a
line cut short by a kill is never continued by later data; :meth:`ResultCache.load` skips such a
line (and any other undecodable one) and counts it instead of failing.

Only successful results are cached. A failed request (rate limit, invalid JSON, ...) is retried by
the next run, which is what a rerun is for; failures are counted in the manifest, not here.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import uuid
from typing import Optional

from tfrs_selreg.data import labels
from tfrs_selreg.teachers.base import ScoringResult

CACHE_DIR = "cache"
SHARD_PATTERN = "shard-*.jsonl"


def result_to_json(key: str, result: ScoringResult) -> str:
    """One cache line (without the newline) for a successful result."""
    if result.failure is not None:
        raise ValueError(f"refusing to cache a failed result ({result.failure}) under key {key}")
    return json.dumps({
        "key": key,
        "request_hash": result.request_hash,
        # Field by field: dataclasses.asdict deep-copies, which costs more than the rest of the line.
        "rows": [{f: getattr(r, f) for f in labels.FIELDS} for r in result.rows],
        "model_calls": result.model_calls,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
    }, sort_keys=True)


def result_from_json(line: str) -> tuple[str, ScoringResult]:
    """Parses one cache line; raises ``ValueError`` (or ``KeyError``/``TypeError``) when it is not one."""
    d = json.loads(line)
    rows = [labels.from_dict(r) for r in d["rows"]]
    for row in rows:  # the label contract holds for cached rows as for fresh ones
        reason = labels.check_values(row)
        if reason:
            raise ValueError(f"cached row breaks the label contract ({reason})")
    usage = {name: d[name] for name in ("model_calls", "tokens_in", "tokens_out")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in usage.values()):
        raise ValueError(f"usage counts must be integers >= 0, got {usage}")
    result = ScoringResult(request_hash=str(d["request_hash"]), rows=rows, **usage)
    return str(d["key"]), result


class ResultCache:
    """Read side of the cache: every complete line of every shard, by key (a later line wins).

    Attributes:
      skipped_lines: lines that were cut short by a kill or could not be decoded.
      shards: shard files read.
    """

    def __init__(self, entries: dict[str, ScoringResult], skipped_lines: int = 0, shards: int = 0):
        self._entries = entries
        self.skipped_lines = skipped_lines
        self.shards = shards

    @classmethod
    def load(cls, directory: str) -> "ResultCache":
        """Reads ``directory/shard-*.jsonl``; a missing folder is an empty cache."""
        entries: dict[str, ScoringResult] = {}
        skipped = 0
        paths = sorted(glob.glob(os.path.join(directory, SHARD_PATTERN)))
        for path in paths:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.endswith("\n"):
                        skipped += 1  # The last line of a writer that was killed mid-write.
                        continue
                    try:
                        key, result = result_from_json(line)
                    except (ValueError, KeyError, TypeError):
                        skipped += 1
                        continue
                    entries[key] = result
        return cls(entries, skipped, len(paths))

    def get(self, key: str) -> Optional[ScoringResult]:
        return self._entries.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class CacheWriter:
    """Write side: one append-only shard file, opened on the first :meth:`put`."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path: Optional[str] = None
        self._file = None

    def put(self, key: str, result: ScoringResult) -> None:
        """Appends one successful result and flushes it to the OS, so a killed job keeps it."""
        line = result_to_json(key, result) + "\n"
        if self._file is None:
            os.makedirs(self.directory, exist_ok=True)
            name = f"shard-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
            self.path = os.path.join(self.directory, name)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
