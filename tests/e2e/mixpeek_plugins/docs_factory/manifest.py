"""Manifest of docs_factory: a factory-built realtime handler and an ``extract``-only pipeline."""

feature_extractor_name = "docs_factory"
version = "1.0.0"
description = "Text lengths (a test plugin with a factory and extract)"
dependencies = []
features = [{"feature_type": "scalar", "feature_name": "length"}]
example_input = {"text": "hello"}
