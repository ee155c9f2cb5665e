"""Training throughput per gate mode: examples/s of ``model.fit`` and the step-time ratio to ``none``.

    python benchmarks/bench_train.py --prepared DIR [--backbone two_tower] [--batch-size 1024]

Every gate mode trains the same backbone on the same ``tf.data`` pipeline (parse after batch,
prefetch) in the same process, with the train step ``fit`` compiles (``make_train_function``). After
``--warmup`` steps (tracing, pipeline fill) the modes take turns for ``--rounds`` rounds of ``--steps``
steps; a mode's step time is its median round's mean. The target of the project is a ``reliability`` step time
of at most 1.25x ``none``. A synthetic folder for it: ``python -m tests.synthetic DIR``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Optional

import tensorflow as tf

from tfrs_selreg.data import input_fn
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models import BACKBONES, ModelConfig, build_model
from tfrs_selreg.regularizer import GATE_MODES, RegularizerConfig

TARGET_RATIO = 1.25


class GateRun:
    """One gate mode's model, compiled train step (the one ``fit`` runs) and data iterator."""

    def __init__(self, data: PreparedData, backbone: str, gate: str, *, batch_size: int, seed: int) -> None:
        tf.keras.utils.set_random_seed(seed)
        self.model = build_model(ModelConfig(backbone=backbone), data, RegularizerConfig(gate=gate))
        self.model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
        self.step = self.model.make_train_function()
        self.iterator = iter(input_fn.make_dataset(data.directory, "train", batch_size=batch_size, shuffle=True,
                                                   seed=seed, repeat=True, drop_remainder=True))

    def seconds_per_step(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            logs = self.step(self.iterator)
        float(logs["total_loss"])  # waits for the last step
        return (time.perf_counter() - start) / steps


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", required=True, help="prepared folder")
    p.add_argument("--backbone", choices=BACKBONES, default="two_tower")
    p.add_argument("--gates", nargs="+", choices=GATE_MODES, default=list(GATE_MODES))
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds; each gate mode runs --steps steps per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (tracing, pipeline fill)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    data = PreparedData(args.prepared)
    gates = ["none"] + [g for g in args.gates if g != "none"]
    runs = {g: GateRun(data, args.backbone, g, batch_size=args.batch_size, seed=args.seed) for g in gates}
    for run in runs.values():
        run.seconds_per_step(args.warmup)
    # Gate modes take turns, so that a machine whose load drifts slows them all alike.
    rounds = {g: [] for g in gates}
    for _ in range(args.rounds):
        for g, run in runs.items():
            rounds[g].append(run.seconds_per_step(args.steps))
    seconds = {g: statistics.median(r) for g, r in rounds.items()}
    rows = [{"gate": g, "step_ms": 1000 * s, "examples_per_second": args.batch_size / s,
             "ratio_to_none": s / seconds["none"]} for g, s in seconds.items()]
    devices = ", ".join(d.name for d in tf.config.list_physical_devices())
    print(f"{args.backbone}, batch {args.batch_size}, median over {args.rounds} rounds of {args.steps} steps, "
          f"{devices}")
    print(f"{'gate':<12}{'step ms':>10}{'examples/s':>12}{'x none':>8}")
    for r in rows:
        print(f"{r['gate']:<12}{r['step_ms']:>10.1f}{r['examples_per_second']:>12.0f}{r['ratio_to_none']:>8.2f}")
    reliability = seconds.get("reliability")
    if reliability is not None:
        ratio = reliability / seconds["none"]
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"reliability / none = {ratio:.2f} (target <= {TARGET_RATIO}): {verdict}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"backbone": args.backbone, "batch_size": args.batch_size, "devices": devices, "rows": rows},
                  f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
