"""Helpers of the minilm_embedder plugin."""
