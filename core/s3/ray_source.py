"""The sets of a dataset as a Ray Data source: one read task per group of shards, read by ``reader.read_shard``.

Not ``ray.data.read_parquet``: its read tasks raise pyarrow's own errors (``ArrowInvalid: Unexpected end
of stream``) without naming the file, and cannot turn an older schema version into the current one.
Here each task reads whole shards in file order through the same function as ``iter_sets``, so a
damaged file fails naming itself, and shards of every readable version come out alike.
"""

from __future__ import annotations

import math
from functools import partial

import pyarrow as pa
import pyarrow.fs as pafs
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from core.s3.reader import Shard, read_shard
from core.s3.schema import SETS_SCHEMA

BATCH_ROWS = 32


def _read(fs: pafs.FileSystem, shards: list[Shard], columns: list[str] | None):
    for shard in shards:
        yield from read_shard(fs, shard, columns, batch_size=BATCH_ROWS)


class SetsDatasource(Datasource):
    def __init__(self, fs: pafs.FileSystem, shards: list[Shard], columns: list[str] | None = None):
        super().__init__()
        self.fs, self.shards, self.columns = fs, shards, columns
        names = columns if columns is not None else SETS_SCHEMA.names
        self.schema = pa.schema([SETS_SCHEMA.field(n) for n in names], metadata=SETS_SCHEMA.metadata)

    def get_name(self) -> str:
        return "S3Sets"  # Ray Data shows the operator as ReadS3Sets

    def estimate_inmemory_data_size(self) -> int:
        return sum(s.size for s in self.shards)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None):
        size = math.ceil(len(self.shards) / max(1, min(parallelism, len(self.shards))))
        groups = [self.shards[i : i + size] for i in range(0, len(self.shards), size)]  # file order kept
        return [
            ReadTask(
                partial(_read, self.fs, group, self.columns),
                BlockMetadata(
                    num_rows=sum(s.rows for s in group),
                    size_bytes=sum(s.size for s in group),
                    input_files=tuple(s.path for s in group),
                    exec_stats=None,
                ),
                schema=self.schema,
                per_task_row_limit=per_task_row_limit,
            )
            for group in groups
        ]
