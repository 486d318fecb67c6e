"""Manifest of hash_embedder_384 (module-attribute style)."""

feature_extractor_name = "hash_embedder_384"
version = "v1"
description = (
    "Deterministic 384-dimensional text embeddings from SHA-256 (a test plugin, no model)."
)
dependencies: list[str] = []

EMBEDDING_DIM = 384

features = [
    {
        "feature_type": "embedding",
        "feature_name": "hash_embedding_384",
        "embedding_dim": EMBEDDING_DIM,
        "distance_metric": "cosine",
    }
]

output_schema = {
    "type": "object",
    "properties": {
        "embedding": {
            "type": "array",
            "items": {"type": "number"},
            "minItems": EMBEDDING_DIM,
            "maxItems": EMBEDDING_DIM,
        }
    },
    "required": ["embedding"],
}

input_mappings = {"text": "text"}

serve_config = {"num_replicas": 1}

example_input = {"text": "hello"}
