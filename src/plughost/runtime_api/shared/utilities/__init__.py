"""``shared.utilities``: the internal helpers of Mixpeek that plugins still import."""
