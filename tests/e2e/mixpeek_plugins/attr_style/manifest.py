"""Manifest of attr_style (module attributes; no serve_config here: realtime.py's service
class carries it as a ServeDeploymentConfig attribute)."""

feature_extractor_name = "attr_style"
version = "v1"
description = "Text statistics and image tags (a test plugin written like Mixpeek's template)."
dependencies: list[str] = []

features = [
    {"feature_type": "text", "feature_name": "text_stats"},
    {"feature_type": "text", "feature_name": "image_tag"},
]

input_schema = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "delay": {"type": "number"}},
    "required": ["text"],
}

output_schema = {
    "type": "object",
    "properties": {
        "normalised": {"type": "string"},
        "word_count": {"type": "integer"},
        "tag": {"type": "string"},
        "replica": {"type": "string"},
    },
    "required": ["normalised", "word_count", "tag"],
}

input_mappings = {"text": "text"}

example_input = {"text": "hello world"}
