"""``shared.models``: namespace models and the local Hugging Face cache (see :mod:`.loader`)."""
