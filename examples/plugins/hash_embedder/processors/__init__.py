"""Helpers of the hash_embedder plugin."""
