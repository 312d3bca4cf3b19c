"""The composition root with real parts: what it registers in Redis at start."""

from pathlib import Path

from adapters.runtime import build_runtime
from adapters.settings import Settings
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
