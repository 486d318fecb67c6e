"""``shared.inference``: Mixpeek's registry of batch services (:mod:`.registry`)."""
