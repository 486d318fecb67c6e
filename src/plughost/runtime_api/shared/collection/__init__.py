"""``shared.collection``."""
