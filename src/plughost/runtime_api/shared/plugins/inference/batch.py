"""``shared.plugins.inference.batch``: the base class of a batch (DataFrame) service.

pandas is imported when a batch is processed, not when this module is imported, so a
realtime replica that only imports the package pays nothing for it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...loggers.services import get_logger

if TYPE_CHECKING:
    import pandas as pd


class BaseBatchInferenceService:
    """A service called with DataFrame batches; subclasses implement ``_process_batch(df)``.

    It is built the way a pipeline step builds its service: ``cls(config)``, optionally with
    ``progress_actor`` (always None on plughost) and keyword arguments, which are kept in
    ``self.kwargs``. Calling the instance on a DataFrame (a dict of columns or a list of rows
    is turned into one first) returns what ``_process_batch`` returned, with its index reset.
    """

    def __init__(self, config: Any = None, progress_actor: Any = None, **kwargs: Any) -> None:
        self.config = config
        self.progress_actor = progress_actor
        self.kwargs: dict[str, Any] = dict(kwargs)
        self.logger: logging.Logger = get_logger(f"plugin.{type(self).__qualname__}")

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Process one batch; subclasses must override this."""
        raise NotImplementedError(f"{type(self).__name__} must implement _process_batch(df)")

    def __call__(self, batch: Any) -> pd.DataFrame:
        """Run ``_process_batch`` on ``batch`` and return the result with a fresh index.

        Raises TypeError when ``_process_batch`` returns something that is not a DataFrame.
        """
        import pandas as pd

        frame = batch if isinstance(batch, pd.DataFrame) else pd.DataFrame(batch)
        result = self._process_batch(frame)
        if not isinstance(result, pd.DataFrame):
            raise TypeError(
                f"{type(self).__name__}._process_batch must return a DataFrame, "
                f"not {type(result).__name__}"
            )
        return result.reset_index(drop=True)
