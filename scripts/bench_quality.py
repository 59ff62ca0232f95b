"""Learning efficiency of our training loop against a plain transformers loop.

    python scripts/bench_quality.py compare                      # ours vs plain, seeds 17 18 19
    python scripts/bench_quality.py compare --tokens 400000 --seeds 17 \
        --runs plain plain:model=ours plain:optimizer=stable_adamw "ours:optimizer.name=decoupled_adamw"

Logic: modernbert.bench.quality (runs, evaluation), quality_runs (this command line).
Method and figures: docs/benchmarks.md, "Learning efficiency".
"""

from modernbert.bench.quality_runs import main

if __name__ == "__main__":
    main()
