"""A small, lazy stand-in for a Ray Data ``Dataset``: what plugins call in ``prepare``.

It holds pandas frames and records operations (``filter``, ``map``, ``map_batches``,
``limit``, column helpers); they run when the data is read (``iter_batches``,
``iter_rows``, ``take``, ``count``, ``to_pandas``). Each row keeps its input position as
the frame index, so results map back to input rows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pandas as pd

Op = Callable[[pd.DataFrame], pd.DataFrame]


class LocalDataset:
    """A lazy sequence of pandas frames with Ray Data's most used methods."""

    def __init__(
        self, frames: Iterable[pd.DataFrame], ops: tuple[Op, ...] = (), limit: int | None = None
    ) -> None:
        self._frames = list(frames)
        self._ops = ops
        self._limit = limit

    @classmethod
    def from_pandas(cls, frame: pd.DataFrame | list[pd.DataFrame]) -> LocalDataset:
        return cls(frame if isinstance(frame, list) else [frame])

    @property
    def row_limit(self) -> int | None:
        """The smallest ``limit(n)`` applied, if any."""
        return self._limit

    def _with(self, op: Op) -> LocalDataset:
        return LocalDataset(self._frames, (*self._ops, op), self._limit)

    # -- transformations ---------------------------------------------------------------------
    def filter(
        self, fn: Callable[[dict[str, Any]], Any] | None = None, **kwargs: Any
    ) -> LocalDataset:
        """Keep the rows for which ``fn(row)`` is truthy (``expr=`` strings are not supported)."""
        if fn is None:
            raise TypeError("filter() needs a function of one row (expressions are not supported)")

        def op(frame: pd.DataFrame) -> pd.DataFrame:
            keep = [bool(fn(row)) for row in _rows(frame)]
            return frame[keep] if keep else frame.iloc[0:0]

        return self._with(op)

    def map(self, fn: Callable[[dict[str, Any]], dict[str, Any]], **kwargs: Any) -> LocalDataset:
        """Replace each row by ``fn(row)`` (a dict)."""

        def op(frame: pd.DataFrame) -> pd.DataFrame:
            rows = [fn(row) for row in _rows(frame)]
            return pd.DataFrame.from_records(rows, index=frame.index) if rows else frame.iloc[0:0]

        return self._with(op)

    def flat_map(
        self, fn: Callable[[dict[str, Any]], list[dict[str, Any]]], **kwargs: Any
    ) -> LocalDataset:
        """Replace each row by the rows ``fn(row)`` returns (they keep the row's position)."""

        def op(frame: pd.DataFrame) -> pd.DataFrame:
            rows: list[dict[str, Any]] = []
            index: list[Any] = []
            for position, row in zip(frame.index, _rows(frame), strict=True):
                produced = list(fn(row))
                rows.extend(produced)
                index.extend([position] * len(produced))
            return pd.DataFrame.from_records(rows, index=index) if rows else frame.iloc[0:0]

        return self._with(op)

    def map_batches(
        self,
        fn: Any,
        *,
        batch_size: int | str | None = None,
        batch_format: str | None = "default",
        fn_args: Iterable[Any] | None = None,
        fn_kwargs: dict[str, Any] | None = None,
        fn_constructor_args: Iterable[Any] | None = None,
        fn_constructor_kwargs: dict[str, Any] | None = None,
        **ray_options: Any,
    ) -> LocalDataset:
        """Apply ``fn`` to batches (pandas by default; ``numpy``/``pyarrow`` also work). A
        class is constructed once with the constructor arguments, as Ray does for actors."""
        if inspect.isclass(fn):
            fn = fn(*(fn_constructor_args or ()), **(fn_constructor_kwargs or {}))
        args, kwargs = tuple(fn_args or ()), dict(fn_kwargs or {})
        size = batch_size if isinstance(batch_size, int) and batch_size > 0 else None

        def op(frame: pd.DataFrame) -> pd.DataFrame:
            parts = [
                _apply_batch(fn, piece, batch_format, args, kwargs)
                for piece in _slices(frame, size or max(1, len(frame)))
            ]
            return pd.concat(parts) if parts else frame

        return self._with(op)

    def limit(self, n: int) -> LocalDataset:
        """At most the first ``n`` rows."""
        limit = n if self._limit is None else min(n, self._limit)
        return LocalDataset(self._frames, (*self._ops, lambda f: f.iloc[:n]), limit)

    def select_columns(self, cols: list[str] | str, **kwargs: Any) -> LocalDataset:
        names = [cols] if isinstance(cols, str) else list(cols)
        return self._with(lambda f: f[names])

    def drop_columns(self, cols: list[str] | str, **kwargs: Any) -> LocalDataset:
        names = [cols] if isinstance(cols, str) else list(cols)
        return self._with(lambda f: f.drop(columns=names))

    def rename_columns(self, names: dict[str, str], **kwargs: Any) -> LocalDataset:
        return self._with(lambda f: f.rename(columns=names))

    def add_column(
        self, col: str, fn: Callable[[pd.DataFrame], Any], **kwargs: Any
    ) -> LocalDataset:
        def op(frame: pd.DataFrame) -> pd.DataFrame:
            out = frame.copy()
            out[col] = list(fn(frame)) if len(frame) else []
            return out

        return self._with(op)

    def materialize(self) -> LocalDataset:
        return LocalDataset([self.to_pandas()])

    # -- consumption ---------------------------------------------------------------------------
    def _frames_out(self) -> Iterator[pd.DataFrame]:
        for frame in self._frames:
            for op in self._ops:
                frame = op(frame)
            yield frame

    def to_pandas(self, limit: int | None = None) -> pd.DataFrame:
        frames = list(self._frames_out())
        out = pd.concat(frames) if frames else pd.DataFrame()
        return out if limit is None else out.iloc[:limit]

    def iter_batches(
        self, *, batch_size: int | None = 256, batch_format: str | None = "default", **kwargs: Any
    ) -> Iterator[Any]:
        frame = self.to_pandas()
        for piece in _slices(frame, batch_size or max(1, len(frame))):
            yield _to_format(piece, batch_format)

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        for frame in self._frames_out():
            yield from _rows(frame)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_rows()

    def take(self, limit: int = 20) -> list[dict[str, Any]]:
        return list(_rows(self.to_pandas(limit)))

    def take_all(self) -> list[dict[str, Any]]:
        return list(self.iter_rows())

    def take_batch(self, batch_size: int = 20, *, batch_format: str | None = "default") -> Any:
        return _to_format(self.to_pandas(batch_size), batch_format)

    def count(self) -> int:
        return sum(len(f) for f in self._frames_out())

    def columns(self) -> list[str]:
        return [str(c) for c in self.to_pandas(0).columns]

    def schema(self) -> Any:
        import pyarrow as pa

        return pa.Schema.from_pandas(self.to_pandas(), preserve_index=False)


def _rows(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The frame's rows as dicts, a missing value as None (as Ray Data gives rows from Arrow:
    a plugin's ``row.get("url")`` must be falsy for a null, which NaN is not)."""
    columns = [str(c) for c in frame.columns]
    frame = frame.astype(object).where(frame.notna(), None)
    for values in frame.itertuples(index=False, name=None):
        yield dict(zip(columns, values, strict=True))


def _slices(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _to_format(frame: pd.DataFrame, batch_format: str | None) -> Any:
    if batch_format in (None, "default", "pandas"):
        return frame
    if batch_format == "numpy":
        return {str(c): frame[c].to_numpy() for c in frame.columns}
    if batch_format == "pyarrow":
        import pyarrow as pa

        return pa.Table.from_pandas(frame, preserve_index=False)
    raise ValueError(f"unsupported batch_format {batch_format!r}")


def _from_format(result: Any, like: pd.DataFrame) -> pd.DataFrame:
    """A map_batches result as a frame indexed like its input when the row count matches."""
    if isinstance(result, pd.DataFrame):
        frame = result
    elif isinstance(result, dict):
        frame = pd.DataFrame({k: list(v) for k, v in result.items()})
    elif hasattr(result, "to_pandas"):
        frame = result.to_pandas()
    else:
        raise TypeError(f"map_batches function returned {type(result).__name__}, not a batch")
    if len(frame) == len(like):
        return frame.set_axis(like.index, axis=0)
    if frame.index.isin(like.index).all():
        return frame  # a filtering function that kept its input's index
    raise ValueError("map_batches changed the number of rows and lost their index")


def _apply_batch(
    fn: Callable[..., Any],
    piece: pd.DataFrame,
    batch_format: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> pd.DataFrame:
    return _from_format(fn(_to_format(piece, batch_format), *args, **kwargs), piece)
