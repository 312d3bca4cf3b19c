"""Unit vectors in rows that grow and shrink, with nearest-neighbour search by inner product."""

import numpy as np


class VectorRows:
    """Rows of float32 unit vectors; removed rows are zeroed and their slots reused."""

    def __init__(self, dimensions: int, ann_threshold: int = 200_000) -> None:
        self.dimensions = dimensions
        self.ann_threshold = ann_threshold
        self._matrix = np.zeros((1024, dimensions), dtype=np.float32)
        self._used = 0  # rows ever handed out; rows below it are live or free
        self._free: list[int] = []

    def __len__(self) -> int:
        return self._used - len(self._free)

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
        return rows

    def remove(self, rows: list[int]) -> None:
        self._matrix[rows] = 0.0
        self._free.extend(rows)

    def get(self, rows: list[int]) -> np.ndarray:
        return self._matrix[rows]

    def nearest(self, vector: np.ndarray, count: int) -> list[int]:
        """Rows with the highest inner product with `vector` (removed rows may appear)."""
        if self._used == 0:
            return []
        scores = self._matrix[: self._used] @ vector
        count = min(count, self._used)
        top = np.argpartition(-scores, count - 1)[:count]
        return top.tolist()
