"""Manifest of docs_definition: a batch-only plugin found through ``extractor_definition``."""

feature_extractor_name = "docs_definition"
version = "1.0.0"
description = "Upper-cased text (a batch-only test plugin with an extractor_definition)"
dependencies = []
features = [{"feature_type": "text", "feature_name": "upper"}]
