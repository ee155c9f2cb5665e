"""Scale: prepare, the embedding teacher and evaluate on synthetic data of 1M and 10M interactions.

    python benchmarks/bench_scale.py --work DIR [--sizes 1000000 10000000] [--stages prepare teacher evaluate]

A seeded generator writes the generic ``csv`` format (``--dataset csv``): ``interactions / 20`` users
with log-normal history lengths (at least 5), ``interactions / 100`` items drawn with Zipf popularity
(``p(rank) ~ 1 / (rank + 10)^1.1``), titles of four words and one or two categories, timestamps
increasing per user. At 10M interactions: 500k users, 100k items.

Stages, each in a fresh process whose peak resident memory (``VmHWM``) is read from ``/proc`` for it
and for every process it starts (Beam's worker processes):

- ``prepare``: ``python -m beam_pipelines.prepare --dataset csv --num-shards auto`` with 2 workers
  (``--direct_num_workers 2 --direct_running_mode multi_processing``); rows/s and training examples/s,
  and the ratio of rows/s to a bare read-group-write pipeline run right after it on the same file with
  the same 2 workers (read the csv lines, key by user, GroupByKey, write the lines as TFRecords), that is
  the ratio of their times. Targets: >= 0.8x the bare pipeline at every size; the peak RSS of each
  worker process at the largest size <= 1.5x that at the smallest.
- ``teacher``: ``python -m beam_pipelines.score --teacher embedding --max-users N`` (``--teacher-users``,
  100k by default, 0 for all users; ``--teacher random`` measures the job without a model; one worker,
  see ``BEAM_1_WORKER``) on the largest prepared folder: prompts/s and peak RSS.
- ``evaluate``: a two-tower run trained for a few steps on each prepared folder (``--evaluate-sizes``,
  default ``--sizes``), then ``tfrs-selreg evaluate --no-diagnostics``: users/s and peak RSS at each size.
  Its work grows with users x items (at 10M: 500k users x 100k items, about 35 minutes on 2 cores).

The DirectRunner's own process (the runner) holds what flows between stages in memory, which Dataflow
keeps in its shuffle service: its RSS is printed apart from the workers' and is not a target.
Generated data and prepared folders are kept in ``--work`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEAM_2_WORKERS = ["--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode",
                  "multi_processing"]
# The teacher stage runs on one worker: with 2, the local runner lost prompts at 100k users in 2 of 2
# runs (docs/results/scale.md), and the job then fails its completeness check.
BEAM_1_WORKER = ["--runner", "DirectRunner"]
PREPARE_RATIO_TARGET = 0.8
WORKER_RSS_GROWTH_TARGET = 1.5
TEACHER_USERS = 100_000
WORDS = ("red", "blue", "quiet", "fast", "deep", "solar", "river", "stone", "paper", "glass", "night",
         "winter", "garden", "signal", "magnet", "vector", "copper", "field", "orbit", "lens")


# ---------------------------------------------------------------- synthetic data

def generate(directory: str, interactions: int, seed: int = 0) -> str:
    """Writes ``interactions.csv`` and ``items.csv`` into ``directory`` (once); returns it."""
    done = os.path.join(directory, "_done")
    if os.path.exists(done):
        return directory
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_users, n_items = interactions // 20, interactions // 100
    lengths = np.maximum(5, rng.lognormal(mean=2.6, sigma=0.8, size=n_users)).astype(np.int64)
    lengths = np.maximum(5, np.round(lengths * (interactions / lengths.sum()))).astype(np.int64)
    lengths[-1] += interactions - lengths.sum()  # exact total
    if lengths[-1] < 5:
        raise AssertionError("history lengths do not add up; choose another seed")
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 1.1
    with open(os.path.join(directory, "items.csv"), "w", encoding="utf-8") as f:
        f.write("item_id,title,categories\n")
        words = rng.integers(0, len(WORDS), size=(n_items, 4))
        cats = rng.integers(0, 30, size=(n_items, 2))
        for i in range(n_items):
            title = " ".join(WORDS[w] for w in words[i]).title()
            categories = f"c{cats[i, 0]}" + (f"|c{cats[i, 1]}" if i % 2 else "")
            f.write(f"i{i},{title} {i},{categories}\n")
    starts = np.concatenate([[0], np.cumsum(lengths)])
    weights = popularity / popularity.sum()
    with open(os.path.join(directory, "interactions.csv"), "w", encoding="utf-8") as f:
        f.write("user_id,item_id,timestamp\n")
        order = rng.permutation(n_users)
        for start in range(0, n_users, 10_000):
            block = order[start:start + 10_000]
            users = np.repeat(block, lengths[block])
            rows = np.concatenate([np.arange(starts[u], starts[u + 1]) for u in block])
            shuffle = rng.permutation(rows.size)  # a block's users interleaved, as in a log
            items = rng.choice(n_items, size=rows.size, p=weights)
            times = 1_000_000_000 + rows  # increasing within a user
            f.write("".join(f"u{u},i{i},{t}\n" for u, i, t in zip(users[shuffle], items, times[shuffle])))
    open(done, "w").close()
    return directory


# ---------------------------------------------------------------- peak memory of a process tree

@dataclasses.dataclass
class ProcessPeak:
    pid: int
    role: str
    peak_mb: float


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "runner"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    return "worker" if "sdk_worker" in cmd or "worker_main" in cmd or "multiprocess" in cmd else "child"


def run_measured(cmd: list[str], log_path: str, env: dict | None = None) -> tuple[float, list[ProcessPeak]]:
    """Runs ``cmd``; returns its wall seconds and the peak RSS of it and every process under it."""
    peaks: dict[int, ProcessPeak] = {}
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                todo, seen = [proc.pid], set()
                while todo:
                    pid = todo.pop()
                    if pid in seen:
                        continue
                    seen.add(pid)
                    kb = _status_kb(pid, "VmHWM")
                    if kb is not None:
                        peak = peaks.setdefault(pid, ProcessPeak(pid, _role(pid, proc.pid), 0.0))
                        peak.peak_mb = max(peak.peak_mb, kb / 1024)
                    todo += _children(pid)
                stop.wait(0.25)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        rc = proc.wait()
        seconds = time.perf_counter() - start
        stop.set()
        thread.join()
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with {rc}; see {log_path}")
    return seconds, sorted(peaks.values(), key=lambda p: p.pid)


def _rss_line(peaks: list[ProcessPeak]) -> str:
    runner = [p.peak_mb for p in peaks if p.role == "runner"]
    workers = [p.peak_mb for p in peaks if p.role != "runner" and p.peak_mb > 50]
    line = f"runner {max(runner, default=0):,.0f} MB"
    return line + (f"; worker processes {', '.join(f'{w:,.0f}' for w in workers)} MB" if workers else "")


def _worker_peak(peaks: list[ProcessPeak]) -> float:
    return max((p.peak_mb for p in peaks if p.role != "runner"), default=float("nan"))


# ---------------------------------------------------------------- stages

def _python() -> list[str]:
    return [sys.executable]


def bare_pipeline(data_dir: str, out: str, beam_args: list[str]) -> None:
    """The baseline: csv lines -> (user, line) -> GroupByKey -> WriteToTFRecord (2 shards)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        _ = (p | beam.io.ReadFromText(os.path.join(data_dir, "interactions.csv"), skip_header_lines=1)
             | beam.Map(lambda line: (line.split(",", 1)[0], line.encode("utf-8")))
             | beam.GroupByKey()
             | beam.FlatMap(lambda kv: kv[1])
             | beam.io.WriteToTFRecord(os.path.join(out, "bare"), num_shards=2))


def stage_prepare(work: str, size: int) -> dict:
    data_dir = generate(os.path.join(work, f"csv-{size}"), size)
    out = os.path.join(work, f"prepared-{size}")
    seconds, peaks = run_measured(
        _python() + ["-m", "beam_pipelines.prepare", "--dataset", "csv", "--data-dir", data_dir, "--output", out,
                     "--num-shards", "auto"] + BEAM_2_WORKERS, os.path.join(work, f"prepare-{size}.log"))
    with open(os.path.join(out, "stats.json")) as f:
        train = json.load(f)["interactions"]["train"]
    bare_seconds, bare_peaks = run_measured(
        _python() + [os.path.abspath(__file__), "--bare", data_dir, os.path.join(work, f"bare-{size}")],
        os.path.join(work, f"bare-{size}.log"))
    rate, bare_rate = train / seconds, size / bare_seconds
    # Both read the same `size` rows: the throughput ratio is the ratio of their times. (Earlier versions
    # divided prepare's training examples/s by the bare rows/s, which also charged prepare for the
    # validation and test rows it writes apart.)
    ratio = bare_seconds / seconds
    print(f"prepare {size:,} interactions: {size / seconds:,.0f} rows/s, {train:,} training examples in "
          f"{seconds:.0f} s = {rate:,.0f} examples/s; peak RSS {_rss_line(peaks)}", flush=True)
    print(f"  bare read-group-write: {size:,} rows in {bare_seconds:.0f} s = {bare_rate:,.0f} rows/s "
          f"(peak RSS {_rss_line(bare_peaks)}); prepare / bare rows/s: {ratio:.2f}x (target >= "
          f"{PREPARE_RATIO_TARGET}); training examples/s / bare rows/s: {rate / bare_rate:.2f}x", flush=True)
    runner = max(p.peak_mb for p in peaks if p.role == "runner")
    return {"size": size, "examples_per_s": rate, "bare_rows_per_s": bare_rate, "ratio": ratio,
            "worker_peak_mb": _worker_peak(peaks), "runner_peak_mb": runner}


def _prepared(work: str, size: int) -> str:
    """The prepared folder of ``size`` interactions, made (unmeasured) when an earlier run left none."""
    prepared = os.path.join(work, f"prepared-{size}")
    if not os.path.exists(os.path.join(prepared, "stats.json")):
        data_dir = generate(os.path.join(work, f"csv-{size}"), size)
        run_measured(_python() + ["-m", "beam_pipelines.prepare", "--dataset", "csv", "--data-dir", data_dir,
                                  "--output", prepared, "--num-shards", "auto"] + BEAM_2_WORKERS,
                     os.path.join(work, f"prepare-{size}.log"))
    return prepared


def stage_teacher(work: str, size: int, users: int = TEACHER_USERS, teacher: str = "embedding") -> None:
    """``users`` = 0: every user (no ``--max-users``)."""
    prepared = _prepared(work, size)
    out = os.path.join(work, f"labels-{size}-{teacher}-{users or 'all'}")
    sample = ["--max-users", str(users)] if users else []
    seconds, peaks = run_measured(
        _python() + ["-m", "beam_pipelines.score", "--prepared", prepared, "--teacher", teacher, "--output",
                     out, *sample] + BEAM_1_WORKER,
        os.path.join(work, f"teacher-{size}-{teacher}.log"), env={**os.environ, "HF_HUB_OFFLINE": "1"})
    with open(os.path.join(out, "manifest.json")) as f:
        counts = json.load(f)["counts"]
    print(f"{teacher} teacher, {counts['users']:,} users of the {size:,} folder: {counts['prompts']:,} prompts "
          f"in {seconds:.0f} s = {counts['prompts'] / seconds:,.1f} prompts/s; peak RSS {_rss_line(peaks)}",
          flush=True)


def stage_evaluate(work: str, size: int) -> dict:
    prepared = _prepared(work, size)
    run_dir = os.path.join(work, f"run-{size}")
    cli = "import sys; from tfrs_selreg.cli import main; sys.exit(main(sys.argv[1:]))"
    if not os.path.exists(os.path.join(run_dir, "weights.index")):
        run_measured(_python() + ["-c", cli, "train", "--prepared", prepared, "--output", run_dir, "--epochs", "1",
                                  "--steps-per-epoch", "5", "--batch-size", "1024", "--validation-max-users", "200",
                                  "--gate", "none"],
                     os.path.join(work, f"train-{size}.log"))
    seconds, peaks = run_measured(_python() + ["-c", cli, "evaluate", "--run", run_dir, "--no-diagnostics"],
                                  os.path.join(work, f"evaluate-{size}.log"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        users = json.load(f)["overall"]["users"]
    print(f"evaluate, {size:,} folder: {users:,} users in {seconds:.0f} s (with TensorFlow's import) = "
          f"{users / seconds:,.0f} users/s; peak RSS {_rss_line(peaks)}", flush=True)
    return {"users": users, "peak_mb": max(p.peak_mb for p in peaks)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", help="folder for the generated data, prepared folders and logs")
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="interactions")
    p.add_argument("--teacher-users", type=int, default=TEACHER_USERS,
                   help="users the teacher stage scores (0: all)")
    p.add_argument("--teacher", default="embedding", help="the teacher stage's teacher (random: planning and "
                   "the job's own cost, with no model)")
    p.add_argument("--evaluate-sizes", type=int, nargs="+", help="interactions for evaluate (default: --sizes)")
    p.add_argument("--stages", nargs="+", choices=("prepare", "teacher", "evaluate"),
                   default=["prepare", "teacher", "evaluate"])
    p.add_argument("--bare", nargs=2, metavar=("DATA_DIR", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare:
        bare_pipeline(*args.bare, BEAM_2_WORKERS)
        return 0
    if not args.work:
        p.error("--work DIR is required")
    os.makedirs(args.work, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    sizes = sorted(args.sizes)
    if "prepare" in args.stages:
        results = [stage_prepare(args.work, size) for size in sizes]
        if len(results) > 1:
            growth = results[-1]["worker_peak_mb"] / results[0]["worker_peak_mb"]
            runner = results[-1]["runner_peak_mb"] / results[0]["runner_peak_mb"]
            print(f"worker peak RSS {sizes[-1]:,} / {sizes[0]:,}: {growth:.2f}x "
                  f"(target <= {WORKER_RSS_GROWTH_TARGET}); runner {runner:.2f}x")
        met = all(r["ratio"] >= PREPARE_RATIO_TARGET for r in results)
        print(f"prepare >= {PREPARE_RATIO_TARGET}x bare at every size: {'met' if met else 'NOT met'}", flush=True)
    if "teacher" in args.stages:
        stage_teacher(args.work, sizes[-1], args.teacher_users, args.teacher)
    if "evaluate" in args.stages:
        sizes = sorted(args.evaluate_sizes or sizes)
        results = [stage_evaluate(args.work, size) for size in sizes]
        if len(results) > 1:
            growth = results[-1]["peak_mb"] / results[0]["peak_mb"]
            print(f"evaluate peak RSS {sizes[-1]:,} / {sizes[0]:,}: {growth:.2f}x "
                  f"for {results[-1]['users'] / results[0]['users']:.1f}x the users", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
