"""Helpers of the hash_embedder_384 plugin."""
