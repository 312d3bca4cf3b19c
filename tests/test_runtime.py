"""The composition root with real parts: what it registers in Redis at start."""

from pathlib import Path

from adapters.runtime import build_runtime, local_adapters
from adapters.settings import Settings
from engine import shipped_adapter
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


def test_the_shipped_grounding_adapter_is_the_default_and_can_be_turned_off(
    tmp_path: Path,
) -> None:
    shipped = shipped_adapter()
    assert shipped is not None and (shipped / "adapter_model.safetensors").is_file()
    assert local_adapters(Settings()) == ({"grounding": shipped}, "grounding")
    assert local_adapters(Settings(adapter="base")) == ({}, "base")  # the base model alone
    mine = {"mine": tmp_path}
    assert local_adapters(Settings(adapters=mine, adapter="mine")) == (mine, "mine")
    # It was trained on the bundled model; another base model does not get it.
    assert local_adapters(Settings(model=str(tmp_path))) == ({}, None)
