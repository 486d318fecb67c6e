"""Manifest of docs_quickstart, shaped like the custom-plugin quick start's: module attributes,
``input_mappings`` (metadata only), ``compute_profile``, and ``features`` in the short key
style (``name``/``type``/``dimensions``/``distance``) that plughost also accepts."""

feature_extractor_name = "docs_quickstart"
version = "1.0.0"
description = "Hash embedding (a test plugin written like the quick start)"

dependencies = []

features = [
    {"type": "vector", "name": "text_embed_v1_embedding", "dimensions": 8, "distance": "cosine"}
]

output_schema = {
    "text_embed_v1_embedding": {
        "type": "array",
        "items": {"type": "number"},
        "description": "8-dim text embedding",
    },
}

input_mappings = {"text": "text"}
tier = 1
tier_label = "SIMPLE"

compute_profile = {"resource_type": "CPU", "batch_size": 4}

example_input = {"text": "hello"}
