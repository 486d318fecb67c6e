"""plughost: a self-hosted service for custom ML plugins (Mixpeek custom-plugins wire API)."""

__version__ = "0.1.0"
