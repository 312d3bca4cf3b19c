"""One model, many conversations: a decode loop that batches every reply in progress.

A single thread owns the model. Each turn of its loop it admits at most one new request (its
prompt is run alone, from the end of the longest beginning it shares with a recent prompt, whose
keys and values `PromptCache` kept; then its key/value cache joins the batch, left-padded to a
common length)
and runs one decode step for every reply in the batch at once: a step reads all the weights
whatever the batch size, so a step for eight replies costs about two and a half for one
(measured, bundled model on a 2-core CPU: 35 ms vs 14.6 ms). Replies that finish, stop or lose
their reader leave the batch at the next step. While a single greedy reply runs alone, each step
also checks a guess of the next few tokens copied from the prompt (prompt lookup decoding): a
support answer often repeats its FAQ entry, and checking ten tokens costs less than two steps.

The decode thread and its OpenMP workers run at the lowest CPU priority (SCHED_IDLE, Linux): a
reply being generated takes seconds, while a customer whose question the FAQ answers exactly
should have the answer in milliseconds, so when both want the CPU the FAQ answer goes first and
generation takes what is left (figures at `engine.cpu_priority.yield_cpu`). It computes
on fewer threads than there are cores while the rest of the machine keeps a core busy
(`ThreadCount`).
"""

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

from engine.chat_model import GenerationParams
from engine.cpu_priority import yield_cpu
from engine.errors import EngineError, ModelBusy
from engine.kv_cache import GrowingLayer, growing_cache
from engine.prompt_cache import PromptCache
from engine.reply_text import ReplyText
from engine.sampling import TokenChooser
from engine.thread_count import ThreadCount, usable_cores

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
LOOKUP_PAUSE = 8  # plain steps after a wrong guess: a reply that does not copy pays little
Delivery = Callable[[str | BaseException | None], None]  # a chunk, an error, or None: the end


@dataclass(eq=False)
class Job:
    """One reply being generated: its prompt, its settings and where its text goes."""

    prompt: Sequence[int]
    params: GenerationParams
    adapter: str
    text: ReplyText
    deliver: Delivery  # called from the decode thread; must be thread-safe
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    lookup_pause: int = 0  # steps to go without guessing after a guess that was all wrong
    admitted: float | None = None  # when its prompt started to run (monotonic)

    def __post_init__(self) -> None:
        self.chooser = TokenChooser(self.params, len(self.prompt))
        self._history = torch.empty(len(self.prompt) + self.params.max_new_tokens, dtype=torch.long)
        self._history[: len(self.prompt)] = torch.tensor(self.prompt, dtype=torch.long)
        self._length = len(self.prompt)

    def history(self) -> torch.Tensor:
        """Prompt and reply so far, as the repetition penalty and prompt lookup see them."""
        return self._history[: self._length]

    def push(self, token: int) -> None:
        self.tokens.append(token)
        self._history[self._length] = token
        self._length += 1


@dataclass
class DecodeStats:
    """Counters of the decode loop since start (read by benchmarks and metrics)."""

    steps: int = 0
    step_rows: int = 0  # replies advanced, summed over steps (a lone reply may gain several tokens)
    step_s: float = 0.0  # time spent in decode steps (prompts excluded)
    prompt_tokens: int = 0  # tokens of the prompts admitted
    prompt_tokens_reused: int = 0  # of those, the ones a recent prompt had run (`PromptCache`)


class BatchScheduler:
    def __init__(
        self,
        model: Any,
        eos_ids: set[int],
        *,
        max_batch: int = 8,
        max_waiting: int = 8,
        max_wait_s: float | None = None,
        mixed_adapters: bool = False,
        prompt_lookup: int = 10,
        threads: int | None = None,
        cache_dtype: torch.dtype | None = None,
        prompt_cache_bytes: int = 128 << 20,
    ) -> None:
        self._model = model
        self._eos = eos_ids
        self._max_batch = max(1, max_batch)
        self._capacity = self._max_batch + max_waiting
        self._max_wait_s = max_wait_s
        self._mixed_adapters = mixed_adapters
        self._lookup = (
            PromptLookupCandidateGenerator(
                eos_token_id=torch.tensor(sorted(eos_ids)),
                num_output_tokens=prompt_lookup,
                max_matching_ngram_size=2,
                max_length=1 << 30,
            )
            if prompt_lookup > 0
            else None
        )
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight = 0  # admitted and not finished: in the batch or in the inbox
        self._in_batch_s = 5.0  # moving average of a reply's time in the batch, prompt included
        self._running: set[Job] = set()  # replies in the batch (their `admitted` is set)
        # The batch; touched only by the decode thread.
        self._jobs: list[Job] = []
        self._cache: Any = None  # a cache of `GrowingLayer`s
        self._mask = torch.ones(0, 0, dtype=torch.long)  # [batch, cached positions]
        self._closed = False
        self.stats = DecodeStats()
        self._thread_count = ThreadCount(threads or usable_cores())
        self._cache_dtype = cache_dtype
        self._prompts = PromptCache(prompt_cache_bytes)  # touched only by the decode thread
        self._thread = threading.Thread(target=self._run, name="answerdesk-decode", daemon=True)
        ready = threading.Event()
        self._thread_ready = ready
        self._thread.start()
        ready.wait()
        # A process that ends without `close()` stops the decode thread first: a SCHED_IDLE
        # thread still waiting when the C++ runtime shuts down aborts the process (seen: exit
        # code 134, "terminate called without an active exception", one exit in four).
        weakref.finalize(self, _stop, self._inbox, self._thread)
        # Every other thread computes on one CPU thread. With GNU OpenMP (torch's CPU wheels), a
        # second thread team anywhere in the process halves the speed of the decode thread's
        # team (measured: 27 -> 60 us for one int8 product); one team is fastest.
        torch.set_num_threads(1)

    @property
    def pending(self) -> int:
        """Replies being generated or waiting for a place in the batch."""
        return self._in_flight

    def submit(self, job: Job) -> None:
        """Queue `job`; raises `ModelBusy` when the batch and the line behind it are full, or when
        it would wait longer than `max_wait_s` for a place in the batch."""
        with self._lock:
            if self._closed:
                raise EngineError("The model has been shut down; restart answerdesk.")
            waiting = max(0, self._in_flight - self._max_batch)
            wait_s = 0.0
            if self._in_flight >= self._max_batch:
                # A place frees every (time in the batch / batch size) seconds on average, and
                # this request needs the (waiting + 1)th. A reply still in the batch has spent at
                # least its age there: when the CPU turns slow (a burst, a cold start), that
                # shows before any reply has finished.
                oldest = min((j.admitted or 0.0 for j in self._running), default=time.monotonic())
                in_batch_s = max(self._in_batch_s, time.monotonic() - oldest)
                wait_s = (waiting + 1) * in_batch_s / self._max_batch
            too_long = self._max_wait_s is not None and wait_s > self._max_wait_s
            if self._in_flight >= self._capacity or too_long:
                raise ModelBusy(waiting, retry_after_s=max(1, round(wait_s)))
            self._in_flight += 1
        self._inbox.put(job)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout=30)

    # The decode thread.

    def _run(self) -> None:
        yield_cpu()  # before the OpenMP workers exist: they inherit it
        # This thread's OpenMP team computes the model; how many of its threads, `ThreadCount`
        # chooses as the machine gets busy and idle.
        torch.set_num_threads(self._thread_count.most)
        torch.ones(
            1 << 16
        ).exp_()  # let torch fix this thread's setting now, before others change it
        self._thread_ready.set()
        with torch.inference_mode():
            self._loop()

    def _loop(self) -> None:
        """Admit at most one new reply per step, so that the replies under way keep streaming
        while a burst of new prompts is being read."""
        while True:
            if len(self._jobs) < self._max_batch:
                try:
                    job = self._inbox.get(block=not self._jobs)
                except queue.Empty:
                    pass
                else:
                    if job is None:
                        self._shut_down()
                        return
                    self._admit(job)
            self._retire()
            if self._jobs:
                rows = len(self._jobs)
                self._use_free_cores()
                started = time.perf_counter()
                try:
                    self._step()
                except Exception as exc:  # the whole batch fails together
                    log.exception("generation failed")
                    for job in self._jobs:
                        self._fail(job, exc)
                    self._retire()
                spent = time.perf_counter() - started
                self.stats.steps += 1
                self.stats.step_rows += rows
                self.stats.step_s += spent

    def _use_free_cores(self) -> None:
        """Compute on as many threads as `ThreadCount` finds free."""
        threads = self._thread_count.choose()
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def _shut_down(self) -> None:
        stopped = EngineError("The model was shut down before the reply was finished.")
        new: list[Job] = []
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                new.append(job)
        for job in [*self._jobs, *new]:
            self._fail(job, stopped)
            self._end(job)
        self._jobs = []

    def _admit(self, job: Job) -> None:
        """Run `job`'s prompt, choose its first token and put it into the batch."""
        if job.cancelled.is_set():
            self._end(job)
            return
        job.admitted = time.monotonic()
        with self._lock:
            self._running.add(job)
        length = len(job.prompt)
        prompt = torch.tensor(job.prompt)
        cache = growing_cache(self._model.config, self._cache_dtype)
        reused, past = self._prompts.longest(job.adapter, prompt)
        for layer, (keys, values) in zip(_growing(cache), past, strict=False):
            layer.replace(keys, values)  # copies them
        self._use_free_cores()
        try:
            out = self._forward(
                prompt[None, reused:],
                torch.ones(1, length, dtype=torch.long),
                torch.arange(reused, length)[None],
                cache,
                [job.adapter],
            )
            token = job.chooser.choose(job.history(), out.logits[0, -1])
        except Exception as exc:
            log.exception("prompt processing failed")
            self._fail(job, exc)
            self._end(job)
            return
        self.stats.prompt_tokens += length
        self.stats.prompt_tokens_reused += reused
        self._prompts.add(job.adapter, prompt, [layer.content() for layer in _growing(cache)])
        if self._append(job, token):
            self._end(job)
            return
        if not self._jobs:
            self._cache, self._mask = cache, torch.ones(1, length, dtype=torch.long)
            self._jobs = [job]
            return
        width = max(self._mask.shape[1], length)
        for mine, theirs in zip(self._layers(), _growing(cache), strict=True):
            (keys, values), (new_keys, new_values) = mine.content(), theirs.content()
            mine.replace(
                torch.cat([_left_pad(keys, width), _left_pad(new_keys, width)]),
                torch.cat([_left_pad(values, width), _left_pad(new_values, width)]),
            )
        ones = torch.ones(1, length, dtype=torch.long)
        self._mask = torch.cat([_left_pad(self._mask, width), _left_pad(ones, width)])
        self._jobs.append(job)

    def _step(self) -> None:
        """One more token for every reply in the batch (several for a lone greedy reply)."""
        if len(self._jobs) == 1:
            self._step_alone(self._jobs[0])
            return
        # Each reply feeds its last token, at the position after its real (unpadded) tokens.
        inputs = torch.tensor([[job.tokens[-1]] for job in self._jobs])
        positions = self._mask.sum(dim=1, keepdim=True)
        self._mask = torch.cat([self._mask, torch.ones_like(positions)], dim=1)
        out = self._forward(inputs, self._mask, positions, self._cache, self._adapters())
        scores = out.logits[:, -1]
        for row, job in enumerate(self._jobs):
            token = job.chooser.choose(job.history(), scores[row])
            job.done = self._append(job, token)

    def _step_alone(self, job: Job) -> None:
        """A decode step for a lone reply; a greedy one also verifies tokens guessed by prompt
        lookup."""
        guesses: list[int] = []
        if job.lookup_pause > 0:
            job.lookup_pause -= 1
        elif self._lookup is not None and job.chooser.greedy:
            history = job.history()
            candidates, _ = self._lookup.get_candidates(cast(torch.LongTensor, history[None]))
            room = job.params.max_new_tokens - len(job.tokens) - 1
            guesses = candidates[0, history.numel() :][: max(room, 0)].tolist()
        inputs = torch.tensor([[job.tokens[-1], *guesses]])
        width = inputs.shape[1]
        cached = self._mask.shape[1]
        positions = self._mask.sum() + torch.arange(width)
        self._mask = torch.cat([self._mask, torch.ones(1, width, dtype=torch.long)], dim=1)
        out = self._forward(
            inputs, self._mask, positions[None], self._cache, [job.adapter], keep=width
        )
        used = 0
        for used in range(width):
            token = job.chooser.choose(job.history(), out.logits[0, used])
            job.done = self._append(job, token)
            if job.done or used == width - 1 or token != guesses[used]:
                break
        if guesses and used == 0:
            job.lookup_pause = LOOKUP_PAUSE
        kept = cached + used + 1  # the cache keeps the inputs up to the last one used
        if kept < cached + width:
            for layer in self._layers():
                layer.truncate(kept)
            self._mask = self._mask[:, :kept]

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        adapters: list[str],
        keep: int = 1,
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if self._mixed_adapters:
            kwargs["adapter_names"] = adapters
        return self._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=keep,
            **kwargs,
        )

    def _layers(self) -> list[GrowingLayer]:
        return _growing(self._cache)

    def _adapters(self) -> list[str]:
        return [job.adapter for job in self._jobs]

    def _append(self, job: Job, token: int) -> bool:
        """Add `token` to `job`'s reply and pass on the text it completes; True when it ends."""
        ended = token in self._eos
        if not ended:
            job.push(token)
            ended = len(job.tokens) >= job.params.max_new_tokens
        chunk = job.text.update(job.tokens, final=ended)
        if chunk:
            job.deliver(chunk)
        return ended or job.text.stopped

    def _retire(self) -> None:
        """Take finished and abandoned replies out of the batch."""
        keep = [
            i for i, job in enumerate(self._jobs) if not job.done and not job.cancelled.is_set()
        ]
        for i, job in enumerate(self._jobs):
            if i not in keep:
                self._end(job)
        if len(keep) == len(self._jobs):
            return
        if not keep:
            self._jobs, self._cache = [], None
            return
        rows = torch.tensor(keep)
        self._jobs = [self._jobs[i] for i in keep]
        mask = self._mask.index_select(0, rows)
        first = int(mask.any(0).to(torch.int8).argmax())  # columns before it are padding only
        self._mask = mask[:, first:]
        for layer in self._layers():
            keys, values = layer.content()
            layer.replace(
                keys.index_select(0, rows)[:, :, first:], values.index_select(0, rows)[:, :, first:]
            )

    def _fail(self, job: Job, exc: BaseException) -> None:
        job.done = True
        if isinstance(exc, EngineError):
            job.deliver(exc)
        elif isinstance(exc, RuntimeError | MemoryError) and "memory" in str(exc).lower():
            job.deliver(
                EngineError(
                    "The model ran out of memory: lower ANSWERDESK_MODEL_MAX_BATCH or "
                    "ANSWERDESK_MAX_NEW_TOKENS, or use a smaller model or quantization."
                )
            )
        else:
            job.deliver(EngineError(f"Generation failed: {exc!r}"))

    def _end(self, job: Job) -> None:
        """`job` leaves for good: its reader gets the end of the stream. Its place is given back
        first, so that a customer who asks again at once is not told the model is busy."""
        job.done = True
        with self._lock:
            self._in_flight -= 1
            self._running.discard(job)
            if job.admitted is not None:
                spent = time.monotonic() - job.admitted
                self._in_batch_s = 0.8 * self._in_batch_s + 0.2 * spent
        job.deliver(None)


def _stop(inbox: "queue.SimpleQueue[Job | None]", thread: threading.Thread) -> None:
    inbox.put(None)
    thread.join(timeout=5)


def _growing(cache: Any) -> list[GrowingLayer]:
    return cast(list[GrowingLayer], cache.layers)


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """`tensor` (a [batch, length] mask or [batch, heads, length, dim] cache) padded to `width`."""
    if tensor.dim() == 2:
        return F.pad(tensor, (width - tensor.shape[1], 0))
    return F.pad(tensor, (0, 0, width - tensor.shape[2], 0))
