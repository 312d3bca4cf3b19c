"""Engine speed and memory: the bundled model per quantization, alone and under concurrency,
next to llama.cpp on the same GGUF file when `llama_cpp` is importable.

Run: `make bench-engine` (or `python -m tests.bench.bench_engine [--modes …] [--concurrency …]`).
Each mode runs in its own process, so `peak_rss_mb` is that mode's own. The prompt is the one the
conversation manager builds for a grounded answer: system text + 3 FAQ entries + 4 history turns
+ the question (~500 tokens); greedy, up to 128 new tokens. Prints one JSON line per measurement.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from bot.messages import Turn
from bot.prompt import build_messages
from engine import ChatMessage, GenerationParams, shipped_adapter
from engine.loading import bf16_hardware
from knowledge import Hit
from knowledge.files import sample_faq_path
from knowledge.formats import read_entries
from tests.bench import MODEL_CACHE, ROOT

MODES = {  # name -> (dtype, quantization); "+cpu": the CPU kernels; "+grounding": the shipped
    # grounding adapter as every request's adapter, as `answerdesk serve` runs the bundled model
    "fp32": ("float32", "none"),
    "fp32+grounding": ("float32", "none"),
    "fp32+cpu": ("float32", "none"),
    "fp32+cpu+grounding": ("float32", "none"),
    "bf16": ("bfloat16", "none"),
    "bf16+cpu": ("bfloat16", "none"),
    "bf16+cpu+grounding": ("bfloat16", "none"),
    "int8": ("float32", "int8"),
    "nf4": ("float32", "nf4"),
}
HISTORY = [
    ("user", "Hi, I ordered a tent last week."),
    ("assistant", "Thanks for your order! How can I help you with it?"),
    ("user", "It has not arrived yet and I need it for a trip on Saturday."),
    ("assistant", "I understand. Let me check what our FAQ says about delivery times."),
]


def prompts(
    count: int, business: str = "Pinecone Outfitters", first: int = 0, turns: int = len(HISTORY)
) -> list[list[ChatMessage]]:
    """`count` grounded prompts, each with three FAQ entries as context (from the `first`th on)
    and its own question, after `turns` turns of history."""
    entries = read_entries(sample_faq_path())
    history = [Turn(role=role, text=text, ts=0.0) for role, text in HISTORY[:turns]]  # type: ignore[arg-type]
    out = []
    for i in range(first, first + count):
        hits = [Hit(entries[(i + k) % len(entries)], 1.0) for k in range(3)]
        question = f"{hits[0].entry.question} Please explain it to me in detail."
        out.append(build_messages(question, hits, history, business))
    return out


def answer_nll(model: Any, tokenizer: Any, count: int = 6, chunk: int = 4) -> float:
    """Mean negative log-likelihood per token of the sample FAQ's answers given their questions,
    fed `chunk` tokens per forward as decoding feeds a small batch: lower is better; a
    quantization that hurts the model shows here."""
    import torch

    from engine.kv_cache import growing_cache

    total, tokens = 0.0, 0
    with torch.inference_mode():
        for entry in read_entries(sample_faq_path())[:count]:
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": entry.question}], add_generation_prompt=True
            )["input_ids"]
            answer = tokenizer(entry.answer, add_special_tokens=False)["input_ids"]
            cache = growing_cache(model.config)
            out = model(input_ids=torch.tensor([prompt]), past_key_values=cache, use_cache=True)
            logits = [out.logits[0, -1:]]
            for start in range(0, len(answer) - 1, chunk):
                piece = torch.tensor([answer[start : start + chunk]])
                out = model(input_ids=piece, past_key_values=cache, use_cache=True)
                logits.append(out.logits[0])
            scores = torch.cat(logits)[: len(answer)].float().log_softmax(-1)
            total -= float(scores.gather(1, torch.tensor(answer)[:, None]).sum())
            tokens += len(answer)
    return total / tokens


async def shared_beginnings(model: Any, mode: str, rounds: int = 3) -> dict:
    """Time to the first token of a prompt after one that begins the same way, with the cache of
    recent prompts (the product's default): a new business's first prompt (cold: only the chat
    template's first tokens are shared), then another question with other FAQ entries (the
    instructions are shared), then a question with the same FAQ entries and a shorter history
    (instructions and entries shared: a follow-up, or another customer asking the same thing)."""
    one = GenerationParams(max_new_tokens=1)
    await timed_reply(model, prompts(1)[0], GenerationParams(max_new_tokens=8))  # warm up
    kinds = ("cold", "same_instructions", "same_faq")
    ttft: dict[str, list[float]] = {kind: [] for kind in kinds}
    reused: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for i in range(rounds):
        business = f"Outfitters No. {i} of {time.time_ns()}"
        variants = (
            prompts(1, business)[0],
            prompts(1, business, first=5)[0],
            prompts(1, business, turns=2)[0],
        )
        for kind, messages in zip(kinds, variants, strict=True):
            before = model.decode_stats.prompt_tokens_reused
            ttft[kind].append((await timed_reply(model, messages, one))["ttft_s"])
            reused[kind] = model.decode_stats.prompt_tokens_reused - before
            tokens[kind] = len(model._tokenizer.apply_chat_template(messages)["input_ids"])
    out: dict[str, Any] = {"bench": "engine", "backend": "transformers", "quant": mode}
    out["measure"] = "prompt_cache"
    for kind in kinds:
        out[f"ttft_s_{kind}"] = round(statistics.median(ttft[kind]), 3)
        out[f"prompt_tokens_{kind}"] = tokens[kind]
        out[f"reused_tokens_{kind}"] = reused[kind]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def timed_reply(model: Any, messages: list[ChatMessage], params: GenerationParams) -> dict:
    started = time.perf_counter()
    first = None
    text = ""
    async for chunk in model.stream(messages, params):
        first = first or time.perf_counter()
        text += chunk
    ended = time.perf_counter()
    return {
        "ttft_s": (first or ended) - started,
        "reply_s": ended - started,
        "tokens": model.count_tokens(text),
        "first": first or ended,
        "end": ended,
    }


def line(mode: str, backend: str, concurrency: int, replies: list[dict], wall: float) -> dict:
    decode = [(r["tokens"] - 1) / (r["reply_s"] - r["ttft_s"]) for r in replies if r["tokens"] > 1]
    # Together: tokens after each first one, from the first first token to the last reply's end.
    together = sum(r["tokens"] - 1 for r in replies) / (
        max(r["end"] for r in replies) - min(r["first"] for r in replies)
    )
    return {
        "bench": "engine",
        "backend": backend,
        "quant": mode,
        "concurrency": concurrency,
        "tokens": round(statistics.mean(r["tokens"] for r in replies), 1),
        "ttft_s": round(statistics.median(r["ttft_s"] for r in replies), 3),
        "decode_tok_s": round(statistics.median(decode), 1) if decode else None,
        "aggregate_tok_s": round(sum(r["tokens"] for r in replies) / wall, 1),
        "aggregate_decode_tok_s": round(
            together if concurrency > 1 else statistics.median(decode), 1
        ),
        # One reply of exactly 128 tokens at the measured rates: replies end at different lengths.
        "reply_s_at_128": round(
            statistics.median(r["ttft_s"] for r in replies) + 127 / statistics.median(decode), 3
        )
        if decode
        else None,
        "reply_s_p50": round(percentile([r["reply_s"] for r in replies], 0.5), 3),
        "reply_s_p95": round(percentile([r["reply_s"] for r in replies], 0.95), 3),
        "peak_rss_mb": peak_rss_mb(),
    }


async def run_transformers(args: argparse.Namespace) -> None:
    from engine import LocalModel
    from engine.cpu_linear import weights_bytes

    def load(prompt_cache_mb: float) -> LocalModel:
        dtype, quantization = MODES[args.worker]
        grounding = args.worker.endswith("+grounding")
        return LocalModel.load(
            None,
            MODEL_CACHE,
            dtype=dtype,  # type: ignore[arg-type]
            quantization=quantization,  # type: ignore[arg-type]
            adapters={"grounding": shipped_adapter()} if grounding else None,
            default_adapter="grounding" if grounding else None,
            cpu_kernels="+cpu" in args.worker,
            threads=args.threads,
            max_batch=max(args.concurrency),
            prompt_lookup=args.prompt_lookup,
            prompt_cache_mb=prompt_cache_mb,
        )

    started = time.perf_counter()
    # Every prompt is run whole here, as llama.cpp's are after its reset; what the cache of
    # recent prompts saves is measured on its own below.
    model = load(prompt_cache_mb=0)
    load_s = time.perf_counter() - started
    weights_mb = round(weights_bytes(model._model) / 2**20, 1)
    params = GenerationParams(max_new_tokens=args.new_tokens)
    await timed_reply(model, prompts(1)[0], GenerationParams(max_new_tokens=8))  # warm up
    levels = args.concurrency if args.worker in args.concurrency_modes else [1]
    for concurrency in levels:
        batch = prompts(concurrency)
        before = dataclasses.replace(model.decode_stats)
        started = time.perf_counter()
        replies = await asyncio.gather(*(timed_reply(model, m, params) for m in batch))
        out = line(args.worker, "transformers", concurrency, replies, time.perf_counter() - started)
        stats = model.decode_stats
        if concurrency > 1:  # tokens per second of decode steps, prompts excluded
            rows = stats.step_rows - before.step_rows
            out["step_decode_tok_s"] = round(rows / (stats.step_s - before.step_s), 1)
        out.update(weights_mb=weights_mb, load_s=round(load_s, 1), prompt_lookup=args.prompt_lookup)
        out["prompt_tokens"] = len(model._tokenizer.apply_chat_template(batch[0])["input_ids"])
        emit(out, args)
    await model.close()
    nll = answer_nll(model._model, model._tokenizer)
    if args.worker in args.concurrency_modes:
        cached = load(prompt_cache_mb=128)
        emit(await shared_beginnings(cached, args.worker), args)
        await cached.close()
    emit(
        {
            "bench": "engine",
            "backend": "transformers",
            "quant": args.worker,
            "answer_nll": round(nll, 4),
        },
        args,
    )


def run_llama_cpp(args: argparse.Namespace) -> None:
    from llama_cpp import Llama

    from engine.bundled import bundled_gguf

    llm = Llama(str(bundled_gguf()), n_ctx=4096, n_threads=args.threads or 2, verbose=False)
    message = prompts(1)[0]
    warm = llm.create_chat_completion(message, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    replies = []
    for _ in range(args.llama_rounds):
        llm.reset()
        started = time.perf_counter()
        first = None
        tokens = 0
        stream = llm.create_chat_completion(
            message,  # type: ignore[arg-type]
            max_tokens=args.new_tokens,
            temperature=0,
            repeat_penalty=1.1,
            stream=True,
        )
        for chunk in stream:
            if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index, union-attr]
                first = first or time.perf_counter()
                tokens += 1
        ended = time.perf_counter()
        replies.append(
            {
                "ttft_s": (first or ended) - started,
                "reply_s": ended - started,
                "tokens": tokens,
                "first": first or ended,
                "end": ended,
            }
        )
    out = line("q4_1", "llama.cpp", 1, replies, sum(r["reply_s"] for r in replies))
    out["prompt_tokens"] = warm["usage"]["prompt_tokens"]  # type: ignore[index]
    emit(out, args)


def emit(out: dict, args: argparse.Namespace) -> None:
    out["command"] = args.command
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modes",
        default="fp32,fp32+cpu,fp32+cpu+grounding,bf16,bf16+cpu,bf16+cpu+grounding,int8,nf4",
    )
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument(
        "--concurrency-modes", default="fp32,fp32+cpu+grounding,bf16+cpu,bf16+cpu+grounding"
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-lookup", type=int, default=10)
    parser.add_argument("--llama-rounds", type=int, default=3)
    parser.add_argument("--no-llama", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--command", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.concurrency_modes = args.concurrency_modes.split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker == "llama.cpp":
        run_llama_cpp(args)
    elif args.worker:
        asyncio.run(run_transformers(args))
    else:
        command = " ".join(["python -m tests.bench.bench_engine", *sys.argv[1:]])
        workers = args.modes.split(",")
        try:
            import llama_cpp  # noqa: F401

            workers = ["llama.cpp", *workers] if not args.no_llama else workers
        except ImportError:
            print(
                json.dumps(
                    {
                        "bench": "engine",
                        "backend": "llama.cpp",
                        "skipped": "llama_cpp is not installed (see README: optional bench extra)",
                        "command": command,
                    }
                ),
                flush=True,
            )
        emulated = not bf16_hardware()  # bf16 products without AVX-512 BF16 / AMX: minutes
        for worker in workers:
            if emulated and worker in MODES and MODES[worker][0] == "bfloat16":
                skipped = "this CPU has no bfloat16 instructions (AVX-512 BF16 / AMX)"
                print(
                    json.dumps(
                        {
                            "bench": "engine",
                            "backend": "transformers",
                            "quant": worker,
                            "skipped": skipped,
                            "command": command,
                        }
                    ),
                    flush=True,
                )
                continue
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.bench_engine",
                    *sys.argv[1:],
                    "--worker",
                    worker,
                    "--command",
                    command,
                ],
                check=True,
                cwd=ROOT,
            )


if __name__ == "__main__":
    main()
