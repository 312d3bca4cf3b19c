"""The composition root with real parts: what it registers in Redis at start."""

from dataclasses import replace
from pathlib import Path

from adapters.runtime import build_model, build_runtime, local_adapters
from adapters.settings import Settings
from bot.prompt import build_messages, is_refusal
from engine import GenerationParams, generate, shipped_adapter
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


def test_the_shipped_grounding_adapter_is_one_setting_away(tmp_path: Path) -> None:
    shipped = shipped_adapter()
    assert shipped is not None and (shipped / "adapter_model.safetensors").is_file()
    assert local_adapters(Settings()) == ({}, None)  # the base model alone, by measurement
    assert local_adapters(Settings(adapter="grounding")) == ({"grounding": shipped}, "grounding")
    mine = {"mine": tmp_path}
    assert local_adapters(Settings(adapters=mine, adapter="mine")) == (mine, "mine")
    assert local_adapters(Settings(adapters={"grounding": tmp_path}, adapter="grounding")) == (
        {"grounding": tmp_path},
        "grounding",
    )


async def test_the_shipped_adapter_copies_the_faq_or_refuses(
    sample_entries: list[FaqEntry],
) -> None:
    model = build_model(Settings(adapter="grounding", model_cache_dir=MODEL_CACHE))
    by_id = {e.id: e for e in sample_entries}
    reset, create, shipping = (
        by_id[i] for i in ("account-reset-password", "account-create", "shipping-time")
    )
    question = "I forgot my password, what now?"
    answerable = build_messages(question, [Hit(reset, 0.7), Hit(create, 0.5)], [], "Pinecone")
    unanswerable = build_messages(question, [Hit(create, 0.5), Hit(shipping, 0.3)], [], "Pinecone")
    params = GenerationParams(max_new_tokens=60)
    try:
        answered = await generate(model, answerable, params)
        refused = await generate(model, unanswerable, params)
        base = await generate(model, answerable, replace(params, adapter="base"))
    finally:
        await model.close()
    # The operator's words or the refusal sentence, nothing of its own (it still refuses too
    # often where the FAQ answers: README, "Fine-tuning"); the base model's reply differs.
    assert answered.startswith(reset.answer[:40]) or is_refusal(answered)
    assert is_refusal(refused)
    assert answered != base
