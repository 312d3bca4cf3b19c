"""Unit vectors in rows that grow and shrink, with nearest-neighbour search by inner product.

Up to `ann_threshold` live rows the search is exact (one matrix product). From there on an
inverted-file index (faiss IVF with 8-bit codes, trained on the rows present when the threshold
is crossed) finds candidates in a few milliseconds even at millions of rows; rows are added to
and removed from it one by one, so operator edits never wait for a rebuild.
"""

import math
from typing import Any

import numpy as np


class VectorRows:
    """Rows of float32 unit vectors; removed rows are zeroed and their slots reused."""

    def __init__(self, dimensions: int, ann_threshold: int = 200_000, probes: int = 32) -> None:
        self.dimensions = dimensions
        self.ann_threshold = ann_threshold
        self.probes = probes
        self._matrix = np.zeros((1024, dimensions), dtype=np.float32)
        self._used = 0  # rows ever handed out; rows below it are live or free
        self._free: list[int] = []
        self._ann: Any = None  # a faiss IVF index once there are enough rows
        self._trained_on = 0  # live rows when the IVF index was trained

    def __len__(self) -> int:
        return self._used - len(self._free)

    @property
    def approximate(self) -> bool:
        return self._ann is not None

    def add(self, vectors: np.ndarray) -> list[int]:
        rows: list[int] = []
        while self._free and len(rows) < len(vectors):
            rows.append(self._free.pop())
        extra = len(vectors) - len(rows)
        if self._used + extra > len(self._matrix):
            grown = np.zeros(
                (max(2 * len(self._matrix), self._used + extra), self.dimensions), dtype=np.float32
            )
            grown[: self._used] = self._matrix[: self._used]
            self._matrix = grown
        rows.extend(range(self._used, self._used + extra))
        self._used += extra
        self._matrix[rows] = vectors
        if len(self) >= max(self.ann_threshold, 8 * self._trained_on):
            self._build_ann()  # first time, or grown so much that the lists are too long
        elif self._ann is not None:
            self._ann.add_with_ids(np.ascontiguousarray(vectors), np.array(rows, dtype=np.int64))
        return rows

    def adopt(self, vectors: np.ndarray) -> None:
        """Take `vectors` (float32, one unit vector per row) as the rows 0…n-1 of an empty
        instance, without copying them; then build the approximate index if they call for one."""
        assert self._used == 0, "adopt() is for a new instance"
        self._matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        self._used = len(vectors)
        self.settle()

    def settle(self) -> None:
        """Build the approximate index now if the rows call for one (after a bulk load made
        with a high `ann_threshold`, so it is trained once, on everything)."""
        if self._ann is None and len(self) >= self.ann_threshold:
            self._build_ann()

    def remove(self, rows: list[int]) -> None:
        self._matrix[rows] = 0.0
        self._free.extend(rows)
        if self._ann is not None:
            self._ann.remove_ids(np.array(rows, dtype=np.int64))

    def get(self, rows: list[int]) -> np.ndarray:
        return self._matrix[rows]

    def nearest(self, vector: np.ndarray, count: int) -> list[int]:
        """Rows with (about) the highest inner product with `vector`; removed rows may appear
        in exact mode, callers skip them."""
        if self._used == 0:
            return []
        if self._ann is not None:
            _, found = self._ann.search(vector.reshape(1, -1).astype(np.float32), count)
            return [int(r) for r in found[0] if r >= 0]
        scores = self._matrix[: self._used] @ vector
        count = min(count, self._used)
        return np.argpartition(-scores, count - 1)[:count].tolist()

    def _build_ann(self) -> None:
        import faiss

        live = np.setdiff1d(np.arange(self._used), np.array(self._free, dtype=np.int64))
        lists = min(2048, int(4 * math.sqrt(len(live))))
        quantizer = faiss.IndexFlatIP(self.dimensions)
        # 8-bit codes: a quarter of the memory; candidates are re-scored exactly by the caller.
        index = faiss.IndexIVFScalarQuantizer(
            quantizer,
            self.dimensions,
            lists,
            faiss.ScalarQuantizer.QT_8bit,  # type: ignore[attr-defined]
            faiss.METRIC_INNER_PRODUCT,
        )
        index.cp.niter = 10
        index.cp.min_points_per_centroid = 16
        sample = np.random.default_rng(0).choice(live, min(len(live), 24 * lists), replace=False)
        index.train(self._matrix[np.sort(sample)])
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        for chunk in np.array_split(live, max(1, len(live) // 200_000)):
            index.add_with_ids(self._matrix[chunk], chunk.astype(np.int64))
        index.nprobe = self.probes
        self._ann, self._trained_on = index, len(live)
