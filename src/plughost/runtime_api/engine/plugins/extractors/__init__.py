"""``engine.plugins.extractors``: the declarative pipeline API (:mod:`.pipeline`)."""
