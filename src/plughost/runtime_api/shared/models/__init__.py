"""``shared.models``: model loading (not served by plughost yet; see :mod:`.loader`)."""
