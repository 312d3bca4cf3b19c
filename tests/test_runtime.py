"""The composition root with real parts: what it registers in Redis at start."""

from dataclasses import replace
from pathlib import Path

import pytest

from adapters.runtime import build_model, build_runtime, local_adapters
from adapters.settings import Settings
from bot.prompt import build_messages, is_refusal
from engine import ChatMessage, EngineError, GenerationParams, generate, shipped_adapter
from knowledge import FaqEntry, Hit
from tests.conftest import MODEL_CACHE


async def test_the_demo_site_follows_the_setting(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    common = {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "data_dir": tmp_path,
        "model_cache_dir": MODEL_CACHE,
        "port": 8123,
    }
    async with build_runtime(Settings(**common)) as runtime:  # type: ignore[arg-type]
        [demo] = await runtime.sites.all()
        assert demo.key == "demo" and demo.demo
        assert set(demo.origins) == {"http://127.0.0.1:8123", "http://localhost:8123"}
        assert await runtime.knowledge.count() == 32  # the sample FAQ, loaded into an empty KB
    async with build_runtime(Settings(**common, demo_site_key="")) as runtime:  # type: ignore[arg-type]
        assert await runtime.sites.all() == []  # turned off: gone, not just unused


def test_the_bundled_model_answers_through_the_shipped_adapter_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    shipped = shipped_adapter()
    assert shipped is not None and (shipped / "adapter_model.safetensors").is_file()
    assert local_adapters(Settings()) == ({"grounding": shipped}, "grounding")
    assert local_adapters(Settings(adapter="base")) == ({}, "base")  # turned off
    # An operator's own base model was not trained with it: no adapter unless asked.
    assert local_adapters(Settings(model="/srv/models/mine")) == ({}, None)
    mine = {"mine": tmp_path}
    assert local_adapters(Settings(adapters=mine, adapter="mine")) == (mine, "mine")
    assert local_adapters(Settings(adapters={"grounding": tmp_path}, adapter="grounding")) == (
        {"grounding": tmp_path},
        "grounding",
    )


def password_prompts(
    entries: list[FaqEntry],
) -> tuple[FaqEntry, list[ChatMessage], list[ChatMessage]]:
    """A question with its FAQ entry in the context, and the same question without it."""
    by_id = {e.id: e for e in entries}
    reset, create, shipping = (
        by_id[i] for i in ("account-reset-password", "account-create", "shipping-time")
    )
    question = "I forgot my password, what now?"
    answerable = build_messages(question, [Hit(reset, 0.7), Hit(create, 0.5)], [], "Pinecone")
    unanswerable = build_messages(question, [Hit(create, 0.5), Hit(shipping, 0.3)], [], "Pinecone")
    return reset, answerable, unanswerable


async def test_the_default_model_copies_the_faq_answer_and_refuses_without_it(
    sample_entries: list[FaqEntry],
) -> None:
    reset, answerable, unanswerable = password_prompts(sample_entries)
    params = GenerationParams(max_new_tokens=60)
    model = build_model(Settings(model_cache_dir=MODEL_CACHE))
    try:
        answered = await generate(model, answerable, params)
        refused = await generate(model, unanswerable, params)
        with pytest.raises(EngineError, match="merged into the model's weights"):
            await generate(model, answerable, replace(params, adapter="base"))
    finally:
        await model.close()
    base_model = build_model(Settings(model_cache_dir=MODEL_CACHE, adapter="base"))
    try:
        base = await generate(base_model, answerable, params)
    finally:
        await base_model.close()
    # The operator's words, nothing of its own; the base model's reply differs.
    assert answered.startswith(reset.answer[:40])
    assert is_refusal(refused)
    assert answered != base


async def test_the_lone_default_adapter_merged_into_the_weights_answers_as_the_lora_layers_do(
    sample_entries: list[FaqEntry],
) -> None:
    """Merged, the shipped adapter costs no time a token; its replies stay the adapter's."""
    shipped = shipped_adapter()
    assert shipped is not None
    _, answerable, unanswerable = password_prompts(sample_entries)
    params = GenerationParams(max_new_tokens=60)
    common = {"model_cache_dir": MODEL_CACHE, "dtype": "float32"}
    merged = build_model(Settings(**common))  # type: ignore[arg-type]
    # With a second adapter loaded, both stay LoRA layers, picked per request.
    layered = build_model(
        Settings(**common, adapters={"again": shipped}, adapter="grounding")  # type: ignore[arg-type]
    )
    try:
        for prompt in (answerable, unanswerable):
            assert await generate(merged, prompt, params) == await generate(layered, prompt, params)
    finally:
        await merged.close()
        await layered.close()
