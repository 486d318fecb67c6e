"""``shared.collection.features.extractors``."""
