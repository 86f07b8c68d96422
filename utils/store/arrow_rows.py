"""A video's arrays as one row of an Arrow table, and back.

An array of shape (N, *dims) becomes a list of N fixed-size lists (nested once per dimension after
the first): ``r21d`` (N, 512) float32 is ``list<fixed_size_list<float32, 512>>``, with crops
(N, 3, 512) ``list<fixed_size_list<fixed_size_list<float32, 512>, 3>>``, ``timestamps_ms`` (N, 2)
``list<fixed_size_list<float64, 2>>``; a 0-d array (``fps``) is a plain float64 column. Fixed-size
lists were chosen over lists of lists because every reader tried gives the shape back from the
type alone: Polars as ``Array(Float32, shape=(512,))`` (``.to_numpy()`` is (N, 512)), Hugging Face
``datasets`` as ``List(Value('float32'), length=512)`` (``with_format("numpy")`` gives (N, 512)),
DuckDB as ``FLOAT[][]``, pandas as an object array of N float32 arrays (``np.stack`` gives (N, 512)).
"""
import numpy as np
import pyarrow as pa

NAME, SOURCE, LOGITS = "name", "source", "logits"  # the columns besides the outputs


def arrow_type(value: np.ndarray) -> pa.DataType:
    """The column type of ``value``'s row: its dtype, in fixed-size lists for every dimension after the
    first, in a list for the first; a 0-d array is a scalar column."""
    kind = pa.from_numpy_dtype(value.dtype)
    if value.ndim == 0:
        return kind
    for size in reversed(value.shape[1:]):
        kind = pa.list_(kind, size)
    return pa.list_(kind)


def row_value(value: np.ndarray, kind: pa.DataType) -> pa.Array:
    """``value`` as a one-row array of type ``kind`` (what arrow_type gave), without copying the data."""
    if value.ndim == 0:
        return pa.array([value.item()], kind)
    flat = pa.array(np.ascontiguousarray(value).reshape(-1))
    for size in reversed(value.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return pa.ListArray.from_arrays(pa.array([0, value.shape[0]], pa.int32()), flat)


def as_numpy(column: pa.Array) -> np.ndarray:
    """One row of a column written by row_value, as a numpy array of its shape (a copy)."""
    if not pa.types.is_list(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False)[0])
    values = column.flatten()  # of this row only, also when the array is a slice
    windows, dims = len(values), []
    while pa.types.is_fixed_size_list(values.type):
        dims.append(values.type.list_size)
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False).reshape(windows, *dims).copy()


def table_row(schema: pa.Schema, name: str, source: str, arrays: dict[str, np.ndarray]) -> pa.Table:
    """A one-row table of ``schema`` (what row_schema gave) holding ``arrays``."""
    columns = {NAME: pa.array([name], pa.string()), SOURCE: pa.array([source], pa.string())}
    for key, value in arrays.items():
        columns[key] = row_value(value, schema.field(key).type)
    return pa.table(columns, schema=schema)


def row_schema(arrays: dict[str, np.ndarray]) -> pa.Schema:
    """The schema of a shard whose first video has ``arrays``: name, source, then one column per array."""
    return pa.schema([(NAME, pa.string()), (SOURCE, pa.string()),
                      *((key, arrow_type(value)) for key, value in arrays.items())])


def check_fits(schema: pa.Schema, arrays: dict[str, np.ndarray]) -> None:
    """ValueError (one line) for arrays that a shard of ``schema`` cannot hold: other keys, or another
    dtype or shape after the first dimension (its columns are fixed-size lists)."""
    wanted = [field.name for field in schema][2:]
    if list(arrays) != wanted:
        raise ValueError(f"the shard holds {wanted}, not {list(arrays)}")
    for key, value in arrays.items():
        if arrow_type(value) != schema.field(key).type:
            raise ValueError(f"{key} of shape {value.shape} and dtype {value.dtype} does not fit the shard's "
                             f"column of {schema.field(key).type}")
