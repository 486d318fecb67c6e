"""attr_style: a plugin laid out as a package, the way Mixpeek's plugin template lays it out.

The package imports every module, so each one must import cleanly inside plughost.
"""

from . import manifest, pipeline, processors, realtime

__all__ = ["manifest", "pipeline", "processors", "realtime"]
