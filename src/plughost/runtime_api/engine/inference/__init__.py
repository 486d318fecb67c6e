"""``engine.inference``: Mixpeek's engine-side names of the inference base classes."""
