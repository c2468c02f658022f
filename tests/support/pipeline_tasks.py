"""The training pipeline's tasks as compiled with one shard (the compile tests' reference)."""

TRAINING_TASKS = [
    "configure",
    "ingest",
    "validate",
    "features",
    "training-set",
    "materialize",
    "start-run",
    "baselines",
    "tune",
    "train",
    "evaluate",
    "register",
    "summarize",
]
