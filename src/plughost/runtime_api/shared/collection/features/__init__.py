"""``shared.collection.features``."""
