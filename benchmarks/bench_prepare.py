"""Throughput of the prepare job: training examples written per second, with 1 and 2 workers.

    python benchmarks/bench_prepare.py [--data-dir ../shared/data/ml-1m] [--dataset ml-1m]

Runs ``beam_pipelines.prepare`` with the DirectRunner, once in-process (1 worker) and once with
``--direct_num_workers 2 --direct_running_mode multi_processing``, and prints examples/s (train
records) and the speed-up. Target: >= 20,000 examples/s with 2 workers on 2 cores.

Machines of one kind differ from day to day, so the same run also times a bare join-to-TFRecord
pipeline with 2 workers (read ``ratings.dat`` lines, group them by user, write each line as a record with
``WriteToTFRecord``) and prints prepare's throughput as a ratio of it.
"""

import argparse
import glob
import os
import tempfile
import time

import tfrs_selreg  # noqa: F401  (before TensorFlow: selects Keras 2)
from beam_pipelines import prepare

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(dataset: str, data_dir: str, workers: int) -> tuple[float, int]:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as out:
        argv = ["--dataset", dataset, "--data-dir", data_dir, "--output", out, "--runner", "DirectRunner"]
        if workers > 1:
            argv += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
        start = time.perf_counter()
        stats = prepare.run(argv)
        seconds = time.perf_counter() - start
        written = sum(1 for _ in tf.data.TFRecordDataset(sorted(glob.glob(os.path.join(out, "train-*")))))
        if written != stats.interactions["train"]:
            raise AssertionError(f"{written} training records written, stats say {stats.interactions}")
        return seconds, written


def _bare_join(data_dir: str, workers: int) -> tuple[float, int]:
    """Seconds and records of the bare baseline: lines -> GroupByKey(user) -> WriteToTFRecord."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    argv = ["--runner", "DirectRunner"] + (
        ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"] if workers > 1 else [])
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        with beam.Pipeline(options=PipelineOptions(argv)) as p:
            _ = (p | beam.io.ReadFromText(os.path.join(data_dir, "ratings.dat"))
                 | beam.Map(lambda line: (line.split("::", 1)[0], line.encode("utf-8")))
                 | beam.GroupByKey()
                 | beam.FlatMap(lambda kv: kv[1])
                 | beam.io.WriteToTFRecord(os.path.join(out, "bare"), num_shards=2))
        seconds = time.perf_counter() - start
        with open(os.path.join(data_dir, "ratings.dat"), "rb") as f:
            return seconds, sum(1 for _ in f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data", "ml-1m"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = {}
    for workers in args.workers:
        seconds, n = _run(args.dataset, args.data_dir, workers)
        results[workers] = n / seconds
        print(f"workers={workers}: {n:,} training examples in {seconds:.1f} s = "
              f"{n / seconds:,.0f} examples/s", flush=True)
    if 1 in results and len(results) > 1:
        for workers, rate in results.items():
            if workers != 1:
                print(f"speed-up {workers} vs 1 worker: {rate / results[1]:.2f}x")
    if 2 in results:
        rate = results[2]
        print(f"target >= 20,000 examples/s with 2 workers: {'met' if rate >= 20000 else 'NOT met'} ({rate:,.0f})")
        if os.path.exists(os.path.join(args.data_dir, "ratings.dat")):
            seconds, n = _bare_join(args.data_dir, 2)
            print(f"baseline, bare join-to-TFRecord with 2 workers: {n:,} records in {seconds:.1f} s = "
                  f"{n / seconds:,.0f} records/s; prepare / baseline: {rate / (n / seconds):.2f}x")


if __name__ == "__main__":
    main()
