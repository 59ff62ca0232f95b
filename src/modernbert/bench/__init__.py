"""Benchmarks of the framework, one subcommand each of `scripts/bench.py` (`cli.py`).

    speed       our model vs transformers' (speed.py -> runner, sides, batches, memory,
                presets, report); imports torch, transformers, `modernbert.model` and the
                flat batch of `modernbert.data.flat` (numpy) only, so it runs on a bare GPU box
    loss-memory the MLM head + loss's peak memory, plain vs chunked
                (`modernbert.model.loss_memory`, which the speed benchmark also reports)
    train-loop  whole training loop vs bare model steps (loop.py)
    train-run   a run's metrics summary and a recipe's step profile (train_run.py)
    quality     learning efficiency vs a plain loop, the golden losses (quality_runs.py ->
                quality, quality_data, golden)
    loader      loader throughput and planning at scale (loader_speed.py, loader_scale.py)
    convert     data-prep conversion throughput and memory (conversion_speed.py)

`flops.py` is the one FLOP count and MFU definition, shared with the training speed
monitor. Method and figures: docs/benchmarks.md (loader and conversion: docs/scale.md).
"""
