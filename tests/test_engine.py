"""The real bundled model (SmolLM2-135M-Instruct from its GGUF), generating on the CPU through
answerdesk's batching scheduler."""

import asyncio
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine import EngineError, GenerationParams, LocalModel, ModelBusy, generate
from engine.loading import bf16_hardware
from engine.onnx_export import export_onnx
from tests.conftest import MODEL_CACHE

# The bf16 CPU kernels compute with oneDNN, which needs AVX-512 BF16 or AMX; elsewhere answerdesk
# runs in float32 (ANSWERDESK_DTYPE=auto) with fbgemm's float16-weight kernel (AVX2), which every
# x86-64 machine this project runs on has: the float32 cases run everywhere.
BF16_CPU = pytest.mark.skipif(
    not bf16_hardware(), reason="this CPU has no bfloat16 instructions (AVX-512 BF16 / AMX)"
)
FAST_DTYPES = ["float32", pytest.param("bfloat16", marks=BF16_CPU)]

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours."},
]
QUESTIONS = [
    "Name three colours.",
    "What is the capital of France?",
    "Write one sentence about tents.",
    "How do I boil an egg?",
]


def chat(question: str) -> list:
    return [{"role": "user", "content": question}]


def reference(model: LocalModel, messages: list, max_new_tokens: int) -> str:
    """What transformers' own `generate` replies, greedy, with the same repetition penalty
    (on the reply's tokens, not the prompt's)."""
    import torch
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    tokenizer = model._tokenizer
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = model._model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            logits_processor=LogitsProcessorList(
                [RepetitionPenaltyLogitsProcessor(1.1, inputs["input_ids"].shape[1])]
            ),
            temperature=None,
            top_p=None,
            top_k=None,
        )
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


async def test_streaming_gives_the_same_text_as_a_whole_reply(local_model: LocalModel) -> None:
    params = GenerationParams(max_new_tokens=24)
    chunks = [c async for c in local_model.stream(MESSAGES, params)]
    whole = await generate(local_model, MESSAGES, params)
    assert len(chunks) > 1
    assert "".join(chunks) == whole
    assert whole == reference(local_model, MESSAGES, 24)


async def test_concurrent_replies_are_batched_and_each_matches_its_reply_alone(
    local_model: LocalModel,
) -> None:
    params = GenerationParams(max_new_tokens=20)
    alone = [reference(local_model, chat(q), 20) for q in QUESTIONS]
    together = await asyncio.gather(*(generate(local_model, chat(q), params) for q in QUESTIONS))
    assert list(together) == alone
    assert len(set(together)) == len(QUESTIONS)


async def test_a_request_arriving_mid_batch_joins_without_waiting(local_model: LocalModel) -> None:
    counting = chat("Count from 1 to 1000, one number per line.")
    long = local_model.stream(
        counting, GenerationParams(max_new_tokens=300, repetition_penalty=1.0)
    )
    assert await anext(long)
    # The long reply is under way; a short one starts now and ends long before it.
    short = asyncio.create_task(generate(local_model, chat(QUESTIONS[1]), GenerationParams(8)))
    chunks_meanwhile = 0
    while not short.done():
        await anext(long)
        chunks_meanwhile += 1
    assert await short == reference(local_model, chat(QUESTIONS[1]), 8)
    assert chunks_meanwhile < 100  # joined at once, not after the 300-token reply
    await long.aclose()


async def test_a_prompt_that_begins_like_a_recent_one_runs_only_the_rest_and_replies_the_same(
    local_model: LocalModel,
) -> None:
    """Grounded prompts share their instructions and often their FAQ entries: the second prompt
    reuses the keys and values of what it shares with the first and gives the reply the whole
    prompt gives."""
    system = {
        "role": "system",
        "content": "You are the support assistant of a camping shop. Tents ship in 2-4 days. "
        "Returns are free within 30 days; bring the receipt.",
    }
    first = [system, {"role": "user", "content": "How long does delivery take?"}]
    second = [system, {"role": "user", "content": "Are returns free?"}]
    params = GenerationParams(max_new_tokens=16)
    await generate(local_model, first, params)
    before = dataclasses.replace(local_model.decode_stats)
    reply = await generate(local_model, second, params)
    after = local_model.decode_stats
    template = local_model._tokenizer.apply_chat_template
    system_tokens = len(template([system])["input_ids"])
    prompt_tokens = len(template(second, add_generation_prompt=True)["input_ids"])
    assert after.prompt_tokens - before.prompt_tokens == prompt_tokens
    reused = after.prompt_tokens_reused - before.prompt_tokens_reused
    assert system_tokens <= reused < prompt_tokens
    assert reply == reference(local_model, second, 16)


async def test_max_new_tokens_is_honoured(local_model: LocalModel) -> None:
    text = await generate(local_model, MESSAGES, GenerationParams(max_new_tokens=5))
    tokens = local_model._tokenizer(text, add_special_tokens=False)["input_ids"]
    assert 1 <= len(tokens) <= 6  # decoding and re-encoding may split one token in two


async def test_a_stop_string_ends_the_reply_before_it(local_model: LocalModel) -> None:
    full = await generate(local_model, MESSAGES, GenerationParams(max_new_tokens=40))
    words = full.split()
    assert len(words) > 6
    stop = words[4]  # a word in the middle of the reply
    cut = await generate(local_model, MESSAGES, GenerationParams(max_new_tokens=40, stop=(stop,)))
    assert cut == full[: full.index(stop)]
    streamed = "".join(
        [c async for c in local_model.stream(MESSAGES, GenerationParams(40, stop=(stop,)))]
    )
    assert streamed == cut  # no chunk showed the beginning of the stop string


async def test_a_cancelled_stream_stops_and_frees_the_model(local_model: LocalModel) -> None:
    # Uncancelled, this reply would take about a minute on a 2-core CPU.
    counting = chat("Count from 1 to 1000, one number per line.")
    params = GenerationParams(max_new_tokens=2000, repetition_penalty=1.0)
    stream = local_model.stream(counting, params)
    assert await anext(stream)
    assert local_model.pending == 1
    await stream.aclose()  # the customer went away
    for _ in range(50):
        if local_model.pending == 0:
            break
        await asyncio.sleep(0.1)
    assert local_model.pending == 0  # its place in the batch is free again


async def test_a_full_queue_says_busy_instead_of_waiting(local_model: LocalModel) -> None:
    small = LocalModel(
        local_model._model, local_model._tokenizer, "small", max_batch=1, max_waiting=1
    )
    first = small.stream(MESSAGES, GenerationParams(max_new_tokens=200))
    assert await anext(first)
    second = asyncio.create_task(generate(small, MESSAGES, GenerationParams(max_new_tokens=4)))
    await asyncio.sleep(0.1)  # waiting for the batch of one to have room
    with pytest.raises(ModelBusy, match=r"busy .*retry in \d+ s"):
        await anext(small.stream(MESSAGES, GenerationParams(max_new_tokens=4)))
    await first.aclose()
    assert await second  # the waiting request is served once there is room
    assert await generate(small, MESSAGES, GenerationParams(max_new_tokens=4))
    await small.close()


async def test_a_request_that_would_wait_too_long_is_told_busy_although_the_line_has_room(
    local_model: LocalModel,
) -> None:
    patient = LocalModel(
        local_model._model, local_model._tokenizer, "patient", max_batch=1, max_waiting=8
    )
    hurried = LocalModel(
        local_model._model,
        local_model._tokenizer,
        "hurried",
        max_batch=1,
        max_waiting=8,
        max_wait_s=1.0,
    )
    for model in (patient, hurried):
        first = model.stream(MESSAGES, GenerationParams(max_new_tokens=200))
        assert await anext(first)  # the batch of one is taken
        second = model.stream(MESSAGES, GenerationParams(max_new_tokens=4))
        if model is hurried:
            # A place frees only when the 200-token reply ends: seconds, not one.
            with pytest.raises(ModelBusy, match=r"busy .*retry in \d+ s") as busy:
                await anext(second)
            assert busy.value.retry_after_s > 1
        else:
            waited = asyncio.create_task(anext(second))
            await first.aclose()
            assert await waited  # served once the first reply left
            await second.aclose()
        await first.aclose()
        await model.close()


async def test_a_reply_that_runs_long_makes_the_next_request_busy_before_any_reply_ends(
    local_model: LocalModel,
) -> None:
    """After quick replies the average says a place frees in no time; a reply that has been in
    the batch for seconds (a cold start, a burst) says otherwise, and the next request is told."""
    model = LocalModel(
        local_model._model, local_model._tokenizer, "slow", max_batch=1, max_wait_s=2.0
    )
    try:
        # Quick replies, each asked the moment the last one ended (never told busy for that):
        # the average time in the batch falls below 0.3 s.
        for _ in range(15):
            assert [chunk async for chunk in model.stream(MESSAGES, GenerationParams(1))]
        counting = [{"role": "user", "content": "Count from 1 to 500: 1, 2, 3, 4,"}]
        long = model.stream(counting, GenerationParams(max_new_tokens=600, repetition_penalty=1))
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            assert await anext(long, None) is not None, "the long reply ended too soon"
        with pytest.raises(ModelBusy) as busy:
            await anext(model.stream(MESSAGES, GenerationParams(max_new_tokens=4)))
        assert busy.value.retry_after_s >= 2
        await long.aclose()
    finally:
        await model.close()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread scheduling policies are Linux's")
async def test_generation_computes_at_a_lower_cpu_priority_than_the_web_server(
    local_model: LocalModel,
) -> None:
    """FAQ answers (the event loop, the query encoder) come before the next generated token."""
    stream = local_model.stream(MESSAGES, GenerationParams(max_new_tokens=200))
    assert await anext(stream)  # the decode thread and its OpenMP workers are computing
    policies = {int(task.name): os.sched_getscheduler(int(task.name)) for task in _tasks()}
    await stream.aclose()
    decode_thread = local_model._scheduler._thread.native_id
    assert policies[decode_thread] == os.SCHED_IDLE
    lowered = [tid for tid, policy in policies.items() if policy == os.SCHED_IDLE]
    assert len(lowered) == local_model._scheduler._thread_count.most  # decode thread and workers
    assert policies[threading.get_native_id()] == os.SCHED_OTHER  # the event loop's: untouched


def _tasks() -> list[Path]:
    return list(Path("/proc/self/task").iterdir())


async def test_an_error_mid_generation_fails_only_that_batch(local_model: LocalModel) -> None:
    model = local_model._model
    calls = {"n": 0}
    original = type(model).forward

    def failing_forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated kernel failure")
        return original(self, *args, **kwargs)

    own = LocalModel(model, local_model._tokenizer, "failing", prompt_lookup=0)
    type(model).forward = failing_forward
    try:
        with pytest.raises(EngineError, match="simulated kernel failure"):
            await generate(own, MESSAGES, GenerationParams(max_new_tokens=10))
    finally:
        type(model).forward = original
    assert await generate(own, MESSAGES, GenerationParams(max_new_tokens=4))  # still serving
    await own.close()


async def test_an_unknown_adapter_is_a_clear_error(local_model: LocalModel) -> None:
    with pytest.raises(EngineError, match="No adapter named 'support'"):
        await generate(local_model, MESSAGES, GenerationParams(max_new_tokens=4, adapter="support"))


def make_adapter(model: LocalModel, directory: Path, seed: int) -> Path:
    """A small LoRA adapter with random (non-zero) weights, saved the way peft saves one."""
    import torch
    from peft import LoraConfig, get_peft_model

    base = type(model._model).from_pretrained(model._model.name_or_path)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(directory)
    return directory


async def test_each_request_gets_its_own_adapter_under_concurrency(
    local_model: LocalModel, tmp_path: Path
) -> None:
    adapters = {
        "alpha": make_adapter(local_model, tmp_path / "alpha", seed=1),
        "beta": make_adapter(local_model, tmp_path / "beta", seed=2),
    }
    model = LocalModel.load(None, MODEL_CACHE, adapters=adapters)
    params = {
        name: GenerationParams(max_new_tokens=12, adapter=name)
        for name in ("alpha", "beta", "base")
    }
    alone = {name: await generate(model, MESSAGES, p) for name, p in params.items()}
    assert len(set(alone.values())) == 3  # each adapter changes the reply
    assert alone["base"] == await generate(local_model, MESSAGES, GenerationParams(12))
    order = ["alpha", "beta", "alpha", "beta", "base", "alpha"]
    together = await asyncio.gather(*(generate(model, MESSAGES, params[n]) for n in order))
    assert list(together) == [alone[n] for n in order]
    await model.close()


@pytest.mark.parametrize("dtype", FAST_DTYPES)
async def test_adapters_work_on_the_fast_cpu_settings(
    local_model: LocalModel, tmp_path: Path, dtype: str
) -> None:
    adapters = {"alpha": make_adapter(local_model, tmp_path / "alpha", seed=1)}
    model = LocalModel.load(
        None,
        MODEL_CACHE,
        adapters=adapters,
        dtype=dtype,  # type: ignore[arg-type]
        cpu_kernels=True,
    )
    replies = await asyncio.gather(
        *(generate(model, MESSAGES, GenerationParams(12, adapter=n)) for n in ("alpha", "base"))
    )
    assert replies[0] != replies[1] and all(replies)
    await model.close()


def test_a_missing_adapter_directory_says_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"no adapter_config.json.*ANSWERDESK_ADAPTERS"):
        LocalModel.load(None, MODEL_CACHE, adapters={"support": tmp_path})


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
async def test_bitsandbytes_quantization_loads_smaller_and_generates(
    local_model: LocalModel, quantization: str
) -> None:
    model = LocalModel.load(None, MODEL_CACHE, quantization=quantization)  # type: ignore[arg-type]
    full = local_model._model.get_memory_footprint()
    assert model._model.get_memory_footprint() < 0.5 * full
    chunks = [c async for c in model.stream(MESSAGES, GenerationParams(max_new_tokens=8))]
    assert chunks and "".join(chunks).strip()
    await model.close()


@pytest.mark.parametrize("dtype", FAST_DTYPES)
async def test_the_fast_cpu_settings_keep_the_models_quality(
    local_model: LocalModel, dtype: str
) -> None:
    """The CPU kernels and the lean decoder (the product's default, in bf16 or float32 by the
    CPU): the FAQ answers stay as likely under the model as with exact float32, and replies
    stream and batch. (A batched reply may differ in wording from the same reply alone: the
    one-row and the batch's kernels may round differently.)"""
    from engine.llama_decoder import LlamaDecoder
    from tests.bench.bench_engine import answer_nll

    fast = LocalModel.load(None, MODEL_CACHE, dtype=dtype, cpu_kernels=True)  # type: ignore[arg-type]
    assert isinstance(fast._model, LlamaDecoder)
    exact_nll = answer_nll(local_model._model, local_model._tokenizer)
    fast_nll = answer_nll(fast._model, fast._tokenizer)
    assert fast_nll < exact_nll * (1.05 if dtype == "bfloat16" else 1.001), (fast_nll, exact_nll)
    params = GenerationParams(max_new_tokens=16)
    chunks = [c async for c in fast.stream(chat(QUESTIONS[1]), params)]
    assert len(chunks) > 1 and "Paris" in "".join(chunks)
    together = await asyncio.gather(*(generate(fast, chat(q), params) for q in QUESTIONS))
    assert all(len(reply.split()) >= 3 for reply in together) and len(set(together)) == 4
    await fast.close()


@pytest.mark.parametrize("dtype", FAST_DTYPES)
def test_the_lean_llama_decoder_computes_what_transformers_computes(dtype: str) -> None:
    """The product's default on a CPU (engine.llama_decoder) against transformers' Llama
    with the same weights and kernels, called as the scheduler calls a model: two prompts
    left-padded to one length, then three new tokens each after the cached prompt (prompt
    lookup's check), then one more token each (a decode step of a batch)."""
    import torch

    from engine.attention import use_float32_attention
    from engine.cpu_linear import use_cpu_linears
    from engine.kv_cache import growing_cache
    from engine.llama_decoder import LlamaDecoder, fits
    from engine.loading import load_base

    tokenizer, hf = load_base(None, MODEL_CACHE, dtype, "none")  # type: ignore[arg-type]
    assert fits(hf)
    lean = LlamaDecoder(hf)  # builds its own layers; hf's stay as they are
    use_float32_attention(use_cpu_linears(hf))
    prompts = [
        tokenizer.apply_chat_template(chat(q), add_generation_prompt=True)["input_ids"]
        for q in ("Name three colours.", "Write one sentence about tents, please.")
    ]
    width = max(map(len, prompts))
    first_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    first_ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])

    def run(model: Any, cache_dtype: torch.dtype) -> list[torch.Tensor]:
        cache, mask, ids = growing_cache(hf.config, cache_dtype), first_mask, first_ids
        logits = []
        for keep, new in ((1, None), (3, [[9, 11, 13], [9, 11, 13]]), (1, [[17], [17]])):
            if new is not None:
                ids = torch.tensor(new)
                mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
            positions = (mask.cumsum(1) - 1).clamp(min=0)[:, -ids.shape[1] :]
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=keep,
            )
            logits.append(out.logits.float().reshape(-1, out.logits.shape[-1]))
        return logits

    with torch.inference_mode():
        # Each with its cache: bf16 or float32 for the lean decoder (bf16 where the CPU has AMX),
        # float32 for transformers' Llama attending in float32.
        for mine, theirs in zip(run(lean, lean.cache_dtype), run(hf, torch.float32), strict=True):
            assert torch.isfinite(mine).all()
            # The same next-token distributions: bf16 rounding (AMX or AVX-512 kernels, attention
            # in bf16 or float32) may shift every logit a little, not what the model would say.
            lm, lt = mine.log_softmax(-1), theirs.log_softmax(-1)
            kl = (lt.exp() * (lt - lm)).sum(-1)  # nats, per position
            assert float(kl.max()) < 0.05, kl
            # (Seen on an AMD EPYC: 0.116 for a token after the arbitrary ids 9, 11, 13, 17,
            # where each is 0.03-0.08 from exact float32; a wrong mask or position moves far more.)
            assert float((lm.exp() - lt.exp()).abs().max()) < 0.15
            assert torch.equal(mine.argmax(-1), theirs.argmax(-1))


def test_a_float32_weight_decodes_in_float16_and_reads_prompts_in_float32() -> None:
    """A float32 model's linear layer (a CPU without bf16): up to ROWS_FP16 rows go through the
    float16 copy of the weight, off only by float16's rounding of it; more (a prompt) through the
    float32 weight itself, exactly; with or without a bias, in any leading shape."""
    import torch

    from engine.cpu_linear import ROWS_FP16, CpuLinear

    torch.manual_seed(2)
    x = torch.randn(2, ROWS_FP16, 96)
    for bias in (True, False):
        linear = torch.nn.Linear(96, 64, bias=bias)
        fast = CpuLinear(linear, keep_weight=False)
        assert fast.extra_bytes() == 64 * 96 * 2
        for inputs in (x[:1, :1], x[:1, :8], x[:1], x.reshape(1, 2 * ROWS_FP16, 96)):
            exact = torch.nn.functional.linear(inputs, linear.weight, linear.bias)
            out = fast(inputs)
            assert out.shape == exact.shape and out.dtype == torch.float32
            error = float((out - exact).norm() / exact.norm())
            if inputs.shape[1] > ROWS_FP16:
                assert torch.equal(out, exact)
            else:  # float16 keeps 11 bits of each weight: a relative error near 2**-12
                assert 1e-6 < error < 1e-3, (inputs.shape, error)


@BF16_CPU
def test_a_weight_from_a_4_bit_file_is_kept_in_4_bits_and_any_other_in_8() -> None:
    """A weight quantized in groups of 32 inputs (as every linear weight of the bundled Q4_1 GGUF
    file is) runs through the 4-bit kernel for up to 8 rows, as exactly as through bf16; any
    other weight (say, with an adapter merged in) gets int8 for one row, bf16 beyond."""
    import torch

    from engine.cpu_linear import CpuLinear

    torch.manual_seed(0)
    base = torch.randn(64, 96) * 0.05  # 64 outputs, 96 inputs: 3 groups of 32
    groups = base.reshape(64, 3, 32)
    low = groups.amin(-1, keepdim=True)
    step = (groups.amax(-1, keepdim=True) - low) / 15
    on_grid = (torch.round((groups - low) / step) * step + low).reshape(64, 96)
    x = torch.randn(1, 16, 96, dtype=torch.bfloat16)
    for weight, four_bit in ((on_grid, True), (base, False)):
        linear = torch.nn.Linear(96, 64).to(torch.bfloat16)
        linear.weight.data = weight.to(torch.bfloat16)
        fast = CpuLinear(linear, keep_weight=False)
        assert fast.four_bit is four_bit
        for rows in (1, 2, 8, 16):
            exact = x[:, :rows].float() @ linear.weight.float().T + linear.bias.float()
            out = fast(x[:, :rows])
            assert out.shape == (1, rows, 64) and out.dtype == torch.bfloat16
            error = float((out.float() - exact).norm() / exact.norm())
            assert error < (0.008 if four_bit or rows > 1 else 0.02), (four_bit, rows, error)


@BF16_CPU
def test_a_weight_is_4_bit_only_if_every_row_is_on_its_grid() -> None:
    """The grid is checked a few rows at a time: a weight whose later rows are off the grid is
    not stored in 4 bits, and a tall weight on the grid computes as exactly as a short one. The
    kernel packs outputs in sixteens: a weight with any other number stays in int8/bf16."""
    import torch

    from engine.cpu_linear import CHECK_ROWS, CpuLinear

    torch.manual_seed(1)
    rows = 3 * CHECK_ROWS + 16
    groups = torch.randn(rows, 3, 32) * 0.05
    low = groups.amin(-1, keepdim=True)
    step = (groups.amax(-1, keepdim=True) - low) / 15
    on_grid = (torch.round((groups - low) / step) * step + low).reshape(rows, 96)
    off_at_the_end = on_grid.clone()
    off_at_the_end[-1] += torch.randn(96) * 0.01
    x = torch.randn(4, 96, dtype=torch.bfloat16)
    for weight, four_bit in ((on_grid, True), (off_at_the_end, False), (on_grid[:-5], False)):
        linear = torch.nn.Linear(96, weight.shape[0], bias=False).to(torch.bfloat16)
        linear.weight.data = weight.to(torch.bfloat16)
        fast = CpuLinear(linear, keep_weight=False)
        assert fast.four_bit is four_bit
        exact = x.float() @ linear.weight.float().T
        error = float((fast(x).float() - exact).norm() / exact.norm())
        assert error < 0.008, (four_bit, error)


def test_an_export_that_fails_leaves_no_file_and_says_why(tmp_path: Path) -> None:
    import torch

    layer = torch.nn.Linear(4, 2)
    sample = {"input_ids": torch.ones(1, 3, 4)}
    file = tmp_path / "model.onnx"

    def broken(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("this model cannot be traced")

    with pytest.raises(EngineError, match="Could not export the model to ONNX: this model"):
        export_onnx(layer, broken, sample, file)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one
    export_onnx(layer, lambda inputs: layer(inputs["input_ids"]), sample, file)
    assert file.stat().st_size > 0
