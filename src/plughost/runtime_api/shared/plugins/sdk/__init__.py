"""``shared.plugins.sdk``: helpers plugins call (:func:`parallel_io`, :func:`concurrent_api_calls`)."""

from __future__ import annotations

from .concurrency import concurrent_api_calls, parallel_io

__all__ = ["concurrent_api_calls", "parallel_io"]
