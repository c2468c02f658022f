"""KFP v2 components: one per file, thin wrappers that delegate to `mlstack.steps`."""
