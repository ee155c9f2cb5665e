"""``tfrs-selreg evaluate``: sliced full-ranking metrics of a trained run.

    tfrs-selreg evaluate --run RUN_DIR [--split test] [--prepared DIR]
    tfrs-selreg evaluate --reference {popularity,embedding-teacher} --prepared DIR --output DIR
    tfrs-selreg evaluate --reference fusion --run RUN_DIR --output DIR [--split test]

``--reference`` ranks with an untrained reference (:mod:`tfrs_selreg.evaluation.reference`) instead of a
run, with the same exclusions, segments and output files (no diagnostics). ``--reference fusion`` fuses
the run's scores with the embedding teacher's (:mod:`tfrs_selreg.evaluation.fusion`, weights fitted on
``val``) and adds the fitted weights and the model/teacher disagreement table to the metrics file.

Restores the run's model (``tfrs_selreg.runs.folder.load_run``), ranks the whole catalog for every
user of the split, ``--chunk-users`` users in memory at a time (:mod:`tfrs_selreg.evaluation.streaming`;
fusion holds the split's score matrices and all its users), and writes to the run folder:

- ``metrics-{split}.json`` (and ``metrics.json`` for ``test``)::

      {"split": "test", "backbone": ..., "gate": ...,
       "overall":    {"auc": .., "recall@10": .., "recall@20": .., "ndcg@10": .., "ndcg@20": ..,
                      "users": n, "items": n},
       "cold_start": {...}, "long_tail": {...},
       "diagnostics": {"gate": {...} | null, "probe_accuracy": {...} | null}}

- ``per_user-{split}.npz``: ``{segment}/user_id`` and ``{segment}/{metric}`` arrays, for paired tests
  over users between runs.

and prints the table of segments by metrics with their user and item counts.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys

import numpy as np
import tensorflow as tf

from tfrs_selreg import flags
from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData, PreparedFolderError
from tfrs_selreg.evaluation import diagnostics, fusion, reference, streaming
from tfrs_selreg.evaluation.ranking import KS, SEGMENTS, USER_ID_KEY, RankingEvaluator
from tfrs_selreg.runs import folder as run_lib

FUSION = "fusion"


def metrics_path(run_dir: str, split: str) -> str:
    return os.path.join(run_dir, f"metrics-{split}.json")


def per_user_path(run_dir: str, split: str) -> str:
    return os.path.join(run_dir, f"per_user-{split}.npz")


def evaluate(run_dir: str, split: str = "test", *, prepared_dir: str | None = None, batch_users: int = 256,
             with_diagnostics: bool = True, max_diagnostic_examples: int | None = None,
             chunk_users: int = streaming.CHUNK_USERS) -> dict:
    """Evaluates the run in ``run_dir`` on ``split`` (``val`` or ``test``); writes and returns the metrics.

    The diagnostics are the ones ``train`` saved with the final weights (``diagnostics.json``; the prepared
    folder is the same preparation, which ``load_run`` checks); they are computed from the training split
    only for a run without that file or with ``max_diagnostic_examples``.
    """
    config, model = run_lib.load_run(run_dir, prepared_dir)
    prepared = prepared_dir or config.prepared
    data = PreparedData(prepared)
    spec = schema.Schema.load(prepared)
    segments = streaming.evaluate_stream(data, split, spec.history_length, model, ks=KS, batch_users=batch_users,
                                         chunk_users=chunk_users)
    result: dict = {"split": split, "run": run_dir, "backbone": config.model.backbone,
                    "gate": config.regularizer.gate}
    result.update({name: segments[name].summary() for name in SEGMENTS})
    if with_diagnostics:
        try:
            saved = (diagnostics.load(os.path.join(run_dir, run_lib.DIAGNOSTICS_FILE))
                     if max_diagnostic_examples is None else None)
        except ValueError as e:
            raise run_lib.RunFolderError(str(e)) from None
        result["diagnostics"] = saved or diagnostics.pair_diagnostics(model, prepared,
                                                                      max_examples=max_diagnostic_examples)
    return _write(result, segments, run_dir, split)


def evaluate_reference(name: str, prepared_dir: str, output_dir: str, split: str = "test",
                       batch_users: int = 256, chunk_users: int = streaming.CHUNK_USERS) -> dict:
    """Ranks ``split`` with the untrained reference ranker ``name`` (``tfrs_selreg.evaluation.reference``)
    and writes ``metrics.json``/``per_user-SPLIT.npz`` into ``output_dir`` as for a run."""
    data = PreparedData(prepared_dir)
    spec = schema.Schema.load(prepared_dir)
    model = reference.ranker(name, data)
    segments = streaming.evaluate_stream(data, split, spec.history_length, model, ks=KS, batch_users=batch_users,
                                         chunk_users=chunk_users)
    result: dict = {"split": split, "run": output_dir, "backbone": f"reference:{name}", "gate": "none",
                    "prepared": prepared_dir}
    result.update({s: segments[s].summary() for s in SEGMENTS})
    tf.io.gfile.makedirs(output_dir)
    return _write(result, segments, output_dir, split)


def evaluate_fusion(run_dir: str, output_dir: str, split: str = "test", *, prepared_dir: str | None = None,
                    batch_users: int = 256) -> dict:
    """Ranks ``split`` with the run's scores fused with the embedding teacher's (:mod:`.fusion`), betas fitted
    on ``val``; writes ``metrics-SPLIT.json`` (with ``fusion``: betas, fit trace, disagreement table) and
    ``per_user-SPLIT.npz`` into ``output_dir``."""
    config, model = run_lib.load_run(run_dir, prepared_dir)
    prepared = prepared_dir or config.prepared
    data = PreparedData(prepared)
    spec = schema.Schema.load(prepared)
    teacher = reference.ranker(reference.EMBEDDING_TEACHER, data)
    scorer = model.all_items_scorer()
    popularity = model.catalog.popularity[1:]  # vocabulary order (row 0 is the OOV slot)
    bucket = fusion.popularity_buckets(popularity)
    val = RankingEvaluator(data, "val", spec.history_length)
    model_val = fusion.score_matrix(val, scorer, batch_users)
    teacher_val = fusion.score_matrix(val, teacher.score_all, batch_users)
    fitted, trace = fusion.fit(val, model_val, teacher_val, bucket)
    table = fusion.disagreement_table(val, model_val, teacher_val, popularity, seed=config.seed)
    if split == "val":
        target, model_scores, teacher_scores = val, model_val, teacher_val
    else:
        del model_val, teacher_val
        target = RankingEvaluator(data, split, spec.history_length)
        model_scores = fusion.score_matrix(target, scorer, batch_users)
        teacher_scores = fusion.score_matrix(target, teacher.score_all, batch_users)
    segments = target.evaluate_scores(lambda a, b: fitted.scores(model_scores[a:b], teacher_scores[a:b]),
                                      ks=KS, batch_users=batch_users)
    result: dict = {"split": split, "run": output_dir, "backbone": config.model.backbone,
                    "gate": f"fusion:{config.regularizer.gate}", "fused_run": run_dir, "prepared": prepared}
    result.update({s: segments[s].summary() for s in SEGMENTS})
    result["fusion"] = {"betas": list(fitted.betas), "fit_metric": f"val {fusion.FIT_METRIC}",
                        "bucket_max_popularity": [int(popularity[bucket == b].max()) for b in range(fusion.BUCKETS)],
                        "fit_trace": trace, "disagreement": table}
    tf.io.gfile.makedirs(output_dir)
    return _write(result, segments, output_dir, split)


def _write(result: dict, segments: dict, run_dir: str, split: str) -> dict:
    text = json.dumps(diagnostics.finite(result), indent=2) + "\n"
    paths = [metrics_path(run_dir, split)] + ([os.path.join(run_dir, "metrics.json")] if split == "test" else [])
    for path in paths:
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
    arrays = {}
    for name, seg in segments.items():
        arrays[f"{name}/{USER_ID_KEY}"] = seg.user_ids
        arrays.update({f"{name}/{metric}": values for metric, values in seg.values.items()})
    buffer = io.BytesIO()  # np.savez seeks, which gfile (gs://) writers do not support
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(per_user_path(run_dir, split), "wb") as f:
        f.write(buffer.getvalue())
    return result


def _number(value, spec: str) -> str:
    """``value`` formatted with ``spec``; ``-`` for a missing (``None``) or non-finite one (an empty segment)."""
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def format_table(result: dict) -> str:
    """The segments x metrics table, with user and held-out item counts."""
    names = [n for n in result[SEGMENTS[0]] if n not in ("users", "items")]
    lines = [f"{'segment':<12}" + "".join(f"{n:>11}" for n in names) + f"{'users':>9}{'items':>9}"]
    for segment in SEGMENTS:
        row = result[segment]
        cells = "".join(f"{_number(row[n], '.4f'):>11}" for n in names)
        lines.append(f"{segment:<12}{cells}{row['users']:>9}{row['items']:>9}")
    gate = (result.get("diagnostics") or {}).get("gate")
    if gate:
        lines.append("gate mean weight: " + ", ".join(
            f"{s} {_number(gate[s]['mean_weight'], '.3f')} ({gate[s]['pairs']} pairs)" for s in SEGMENTS))
    probes = (result.get("diagnostics") or {}).get("probe_accuracy")
    if probes:
        lines.append("teacher probe accuracy: " + ", ".join(
            f"{s} {_number(probes[s]['accuracy'], '.3f')} ({probes[s]['probes']} probes)" for s in SEGMENTS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tfrs-selreg evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="run folder written by `tfrs-selreg train`")
    p.add_argument("--reference", choices=(*reference.REFERENCES, FUSION),
                   help="rank with a reference instead of the run: item popularity or the embedding teacher "
                        "alone (need --prepared and --output), or the run fused with the teacher (fusion: "
                        "needs --run and --output)")
    p.add_argument("--output", help="with --reference: folder for metrics.json and per_user-SPLIT.npz")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--prepared", help="prepared folder, if not the one recorded in the run's config.json")
    p.add_argument("--batch-users", type=flags.integer(1), default=256, help="users ranked per batch")
    p.add_argument("--chunk-users", type=flags.integer(1), default=streaming.CHUNK_USERS,
                   help="users read from the users files and held in memory at a time (not with fusion)")
    p.add_argument("--no-diagnostics", action="store_true", help="skip the gate and teacher diagnostics")
    p.add_argument("--max-diagnostic-examples", type=flags.integer(1), help="training records read for the diagnostics")
    args = p.parse_args(argv)
    if args.reference == FUSION:
        if not (args.run and args.output):
            p.error("--reference fusion needs --run RUN_DIR and --output DIR")
        try:
            result = evaluate_fusion(args.run, args.output, args.split, prepared_dir=args.prepared,
                                     batch_users=args.batch_users)
        except (FileNotFoundError, ValueError) as e:
            print(f"tfrs-selreg evaluate: {e}", file=sys.stderr)
            return 2
        print(f"{args.run} fused with the embedding teacher (betas by popularity quartile "
              f"{result['fusion']['betas']}, fitted on val), split {args.split}:")
        print(format_table(diagnostics.finite(result)))
        print("\nmodel vs teacher on validation pairs:")
        print(fusion.format_disagreement(result["fusion"]["disagreement"]))
        return 0
    if bool(args.run) == bool(args.reference):
        p.error("give one of --run RUN_DIR or --reference NAME")
    if args.reference:
        if not (args.prepared and args.output):
            p.error("--reference needs --prepared DIR and --output DIR")
        try:
            result = evaluate_reference(args.reference, args.prepared, args.output, args.split, args.batch_users,
                                        args.chunk_users)
        except (FileNotFoundError, ValueError) as e:
            print(f"tfrs-selreg evaluate: {e}", file=sys.stderr)
            return 2
        print(f"reference {args.reference} on {args.prepared}, split {args.split}:")
        print(format_table(diagnostics.finite(result)))
        return 0
    try:
        result = evaluate(args.run, args.split, prepared_dir=args.prepared, batch_users=args.batch_users,
                          with_diagnostics=not args.no_diagnostics,
                          max_diagnostic_examples=args.max_diagnostic_examples, chunk_users=args.chunk_users)
    except (FileNotFoundError, run_lib.RunFolderError, PreparedFolderError) as e:
        print(f"tfrs-selreg evaluate: {e}", file=sys.stderr)
        return 2
    print(f"{args.run} ({result['backbone']}, gate {result['gate']}), split {args.split}:")
    print(format_table(diagnostics.finite(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
