"""The persistent result cache of the scoring job: what makes reruns free and kills harmless.

A teacher's answer to a request is stored under ``Teacher.cache_key(request)`` (teacher name, model,
template version and the hash of everything the teacher saw), so a changed prompt, model or scoring
rule never reuses an old answer.

Layout: a cache folder (``OUT/cache/`` or ``--cache-dir``, any Beam file system: local or ``gs://``) of
JSON-lines objects, ``shard-<host>-<pid>-<random>.jsonl``, each written whole and never appended to
(object stores cannot append), one result per line. A writer (one per Beam worker DoFn instance)
buffers results and writes an object every ``flush_every`` results, every ``flush_seconds`` and at the
end of each bundle, so writers never share an object and a job killed half-way keeps every result but
those of its last unwritten buffer (at most ``flush_every`` results or ``flush_seconds`` of work per
worker: 100 and 2 s by default, a PUT every 2 s at most, which an object store takes easily). On
a local disk a kill during a write can leave an object cut short; a reader skips such a line (and any
other undecodable one) and counts it instead of failing: the scoring job reads the lines with Beam and
joins them with its prompts by key (``beam_pipelines.score``), :class:`ResultCache` reads a folder in
one process (for tools and tests).

Only successful results are cached. A failed request (rate limit, invalid JSON, ...) is retried by
the next run, which is what a rerun is for; failures are counted in the manifest, not here.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

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
    """Read side of the cache in one process: every complete line of every object, by key (a later line
    wins). The scoring job does not hold the cache; it joins the lines in Beam.

    Attributes:
      skipped_lines: lines that were cut short by a kill or could not be decoded.
      shards: objects read.
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
        paths = sorted(m.path for m in FileSystems.match([FileSystems.join(directory, SHARD_PATTERN)])[0].metadata_list)
        for path in paths:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                text = f.read().decode("utf-8", errors="replace")
            lines = text.split("\n")
            skipped += bool(lines[-1])  # the last line of a write cut short by a kill has no newline
            for line in lines[:-1]:
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
    """Write side: successful results buffered and written as whole new objects (see the module docstring).

    Attributes:
      paths: the objects written so far.
    """

    def __init__(self, directory: str, flush_every: int = 100, flush_seconds: float = 2.0):
        self.directory = directory
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.paths: list[str] = []
        self._lines: list[str] = []
        self._since = time.monotonic()

    def put(self, key: str, result: ScoringResult) -> None:
        """Buffers one successful result; writes the buffer when it is full or old enough."""
        self._lines.append(result_to_json(key, result) + "\n")
        if len(self._lines) >= self.flush_every or time.monotonic() - self._since >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Writes the buffered results as one new object (nothing when the buffer is empty)."""
        self._since = time.monotonic()
        if not self._lines:
            return
        name = f"shard-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        path = FileSystems.join(self.directory, name)
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write("".join(self._lines).encode("utf-8"))
        self.paths.append(path)
        self._lines = []

    def close(self) -> None:
        self.flush()
