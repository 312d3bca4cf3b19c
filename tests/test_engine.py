"""The real bundled model (SmolLM2-135M-Instruct from its GGUF), generating on the CPU."""

import asyncio

import pytest

from engine import GenerationParams, LocalModel, ModelBusy, generate

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours."},
]


async def test_streaming_gives_the_same_text_as_a_whole_reply(local_model: LocalModel) -> None:
    params = GenerationParams(max_new_tokens=24)
    chunks = [c async for c in local_model.stream(MESSAGES, params)]
    whole = await generate(local_model, MESSAGES, params)
    assert len(chunks) > 1
    assert "".join(chunks) == whole
    assert len(whole.split()) >= 3


async def test_max_new_tokens_is_honoured(local_model: LocalModel) -> None:
    text = await generate(local_model, MESSAGES, GenerationParams(max_new_tokens=5))
    tokens = local_model._tokenizer(text, add_special_tokens=False)["input_ids"]
    assert 1 <= len(tokens) <= 6  # decoding and re-encoding may split one token in two


async def test_a_cancelled_stream_stops_and_frees_the_model(local_model: LocalModel) -> None:
    # Uncancelled, this reply would take about a minute on a 2-core CPU.
    counting = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]
    params = GenerationParams(max_new_tokens=2000, repetition_penalty=1.0)
    stream = local_model.stream(counting, params)
    first = await anext(stream)
    assert first
    await stream.aclose()  # the customer went away
    # The next request is served at once: the cancelled generation no longer holds the model.
    text = await asyncio.wait_for(
        generate(local_model, MESSAGES, GenerationParams(max_new_tokens=4)), timeout=15
    )
    assert text


async def test_a_full_queue_says_busy_instead_of_waiting(local_model: LocalModel) -> None:
    small = LocalModel(local_model._model, local_model._tokenizer, "small-queue", max_waiting=0)
    first = small.stream(MESSAGES, GenerationParams(max_new_tokens=200))
    assert await anext(first)
    with pytest.raises(ModelBusy, match="busy"):
        await anext(small.stream(MESSAGES, GenerationParams(max_new_tokens=4)))
    await first.aclose()
    assert await generate(small, MESSAGES, GenerationParams(max_new_tokens=4))  # free again
