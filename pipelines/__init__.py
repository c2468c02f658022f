"""KFP v2 pipelines: wiring only; compiled to dist/*.yaml by `make compile`."""
