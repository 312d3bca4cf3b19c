"""The composition root: builds every part from one Settings object and tears it down."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from adapters.email_follow_ups import EmailFollowUps, Mailer, Smtp, follow_up
from adapters.handoff_webhook import HandoffWebhook, remind
from adapters.metrics import Metrics
from adapters.operators import OperatorAccounts
from adapters.redis_server import open_redis
from adapters.settings import Settings
from adapters.sites import Site, SiteRegistry
from adapters.team_email import TeamEmail
from bot import (
    AnswerPolicy,
    ConversationManager,
    FollowUps,
    HandoffNotifier,
    RateLimiter,
    SessionKeys,
    SessionStore,
)
from engine import ChatModel, GenerationParams, shipped_adapter
from knowledge import (
    Embedder,
    KnowledgeKeys,
    KnowledgeStore,
    OnnxQueries,
    Retriever,
    read_entries,
    sample_faq_path,
)

if TYPE_CHECKING:  # aiogram takes seconds to import; a server without Telegram never does
    from adapters.telegram_service import TelegramService

log = logging.getLogger(__name__)

GROUNDING = "grounding"  # the name the shipped adapter is loaded under


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    knowledge: KnowledgeStore
    retriever: Retriever
    manager: ConversationManager
    sites: SiteRegistry
    operators: OperatorAccounts
    telegram: "TelegramService | None" = None


async def seed_knowledge(store: KnowledgeStore, retriever: Retriever, settings: Settings) -> None:
    """Load the configured FAQ file (the sample FAQ by default) into an empty knowledge base, and
    choose its answer thresholds if nobody has yet."""
    if not await store.count():
        path = settings.faq_file or sample_faq_path()
        entries = read_entries(path)
        await store.replace(entries)
        log.info("knowledge base loaded from %s: %d entries", path, len(entries))
    await retriever.refresh()
    if retriever.calibration is None and await store.count() >= 2:
        calibration = await retriever.calibrate()
        log.info(
            "answer thresholds calibrated: answer at %.3f, verbatim FAQ answer at %.3f",
            calibration.answer,
            calibration.faq,
        )


def demo_site(settings: Settings) -> Site:
    """The demo site: usable from this server's own pages (the demo page at /)."""
    hosts = {settings.host}
    if settings.host in ("127.0.0.1", "0.0.0.0", "localhost", "::1"):
        hosts |= {"127.0.0.1", "localhost"}
    hosts.discard("0.0.0.0")
    origins = tuple(sorted(f"http://{h}:{settings.port}" for h in hosts))
    return Site(
        key=str(settings.demo_site_key),
        name="Demo",
        origins=origins,
        title=f"{settings.business_name} support",
        demo=True,
    )


def local_adapters(settings: Settings) -> tuple[dict[str, Path], str | None]:
    """The adapters the local model loads, and its default one. `grounding` names the shipped
    grounding adapter unless ANSWERDESK_ADAPTERS gives that name a folder of its own. With no
    ANSWERDESK_ADAPTER, the bundled model answers through the shipped adapter, which was trained
    for it (README, "Fine-tuning"); a model of the operator's own gets none."""
    adapters = dict(settings.adapters)
    shipped = shipped_adapter()
    default = settings.adapter
    if default is None and settings.model is None and shipped is not None:
        default = GROUNDING
    if default == GROUNDING and shipped is not None:
        adapters.setdefault(GROUNDING, shipped)
    return adapters, default


def build_model(settings: Settings) -> ChatModel:
    """The model server named by ANSWERDESK_MODEL_URL, else the local model as configured."""
    if settings.model_url:
        from engine import RemoteModel  # each model's libraries load only when it is used

        return RemoteModel(
            settings.model_url,
            model=settings.adapter or settings.model or "default",
            api_key=settings.model_api_key,
            timeout_s=settings.model_timeout_s,
        )
    from engine import LocalModel

    adapters, default = local_adapters(settings)
    return LocalModel.load(
        settings.model,
        settings.models_dir,
        dtype=settings.dtype,
        quantization=settings.quantization,
        adapters=adapters,
        default_adapter=default,
        cpu_kernels=settings.cpu_kernels,
        threads=settings.threads,
        max_batch=settings.model_max_batch,
        max_waiting=settings.model_max_waiting,
        max_wait_s=settings.model_max_wait_s,
        prompt_lookup=settings.prompt_lookup,
        prompt_cache_mb=settings.prompt_cache_mb,
    )


def build_embedder(settings: Settings, redis: Redis) -> Embedder:
    """The configured embedder, its vectors cached in `redis`. `auto` is the model's test: bfloat16
    where the CPU computes in it."""
    from engine.loading import fast_dtype
    from engine.onnx_export import export_onnx

    onnx = OnnxQueries(settings.models_dir, export_onnx)
    return Embedder(
        settings.embedder,
        redis,
        KnowledgeKeys(settings.redis_prefix),
        dtype=fast_dtype(settings.embedder_dtype),
        onnx=onnx if settings.query_encoder == "onnx" else None,
    )


@asynccontextmanager
async def build_runtime(
    settings: Settings, metrics: Metrics | None = None
) -> AsyncIterator[Runtime]:
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        # The model first: its decode thread must be the process's only multi-threaded torch
        # user, and loading it makes every thread started later compute on one (engine.scheduler).
        model = await asyncio.to_thread(build_model, settings)
        knowledge = KnowledgeStore(redis, KnowledgeKeys(settings.redis_prefix))
        embedder = await asyncio.to_thread(build_embedder, settings, redis)
        retriever = Retriever(knowledge, embedder)
        await seed_knowledge(knowledge, retriever, settings)
        sessions = SessionStore(
            redis,
            SessionKeys(settings.redis_prefix),
            ttl_s=int(settings.session_ttl_days * 86400),
            max_turns=settings.history_max_turns,
        )
        policy = AnswerPolicy(
            faq_threshold=settings.faq_threshold,
            grounded_threshold=settings.grounded_threshold,
            max_message_chars=settings.max_message_chars,
            business=settings.business_name,
            handoff_after_fallbacks=settings.handoff_after_fallbacks,
            operator_idle_s=settings.operator_idle_minutes * 60,
            generation=GenerationParams(max_new_tokens=settings.max_new_tokens),
            reply_timeout_s=settings.reply_timeout_s,
            hours=settings.hours,
        )
        limiter = RateLimiter(redis, settings.rate_limit, sessions.keys.rate_limit())
        notifiers: list[HandoffNotifier] = []
        bot = team = None
        if settings.telegram_token:
            from adapters.telegram_service import make_bot
            from adapters.telegram_team_chat import TeamChat, TeamThreads

            on_retry = metrics.telegram_retries.inc if metrics is not None else None
            bot = make_bot(settings.telegram_token, settings.telegram_api_url, on_retry)
            if settings.telegram_team_chat is not None:
                threads = TeamThreads(redis, settings.redis_prefix, sessions.ttl_s)
                team = TeamChat(
                    bot,
                    settings.telegram_team_chat,
                    sessions,
                    threads,
                    settings.operator_desk_url,
                    on_result=metrics.team_chat_posted if metrics is not None else None,
                )
                notifiers.append(team)
        webhook = None
        if settings.handoff_webhook_url is not None:
            webhook = HandoffWebhook(
                str(settings.handoff_webhook_url),
                settings.operator_desk_url,
                on_result=metrics.handoff_notified if metrics is not None else None,
            )
            notifiers.append(webhook)
        follow_ups = mailer = emailer = team_mail = None
        if settings.smtp_url is not None:
            follow_ups = FollowUps(sessions, settings.email_after_minutes * 60)
            mailer = Mailer(
                Smtp.from_url(settings.smtp_url.get_secret_value()),
                settings.mail_from,
                settings.business_name,
                settings.zone,
            )
            emailer = EmailFollowUps(follow_ups)
            notifiers.append(emailer)
            if settings.team_email:
                on_told = metrics.handoff_notified if metrics is not None else None
                team_mail = TeamEmail(
                    mailer, settings.team_email, settings.operator_desk_url, on_told
                )
                notifiers.append(team_mail)
        manager = ConversationManager(
            sessions, retriever, model, policy, limiter, metrics, notifiers, settings.zone
        )
        if metrics is not None:
            metrics.watch_model(model)
        sites = SiteRegistry(redis, settings.redis_prefix)
        demo = demo_site(settings) if settings.demo_site_key else None
        for site in await sites.all():  # a demo site of an earlier configuration goes away
            if site.demo and (demo is None or site.key != demo.key):
                await sites.remove(site.key)
        if demo is not None:
            await sites.put(demo)
        telegram = None
        if bot is not None:
            from adapters.telegram import TelegramTexts
            from adapters.telegram_service import TelegramService

            texts = TelegramTexts(
                greeting=settings.telegram_greeting.format(business=settings.business_name),
                help=settings.telegram_help,
            )
            telegram = TelegramService(bot, manager, redis, settings.redis_prefix, texts, team)
            try:
                await telegram.start()
            except BaseException:
                await bot.session.close()
                raise
        reminders = None
        tellers = [n for n in notifiers if n is not emailer]  # those that tell the team
        if tellers and settings.handoff_remind_minutes:
            after_s = settings.handoff_remind_minutes * 60
            reminders = asyncio.create_task(remind(manager.handoff, tellers, after_s, policy.hours))
        emails = None
        if follow_ups is not None and mailer is not None:
            on_mailed = metrics.follow_up_emailed if metrics is not None else None
            emails = asyncio.create_task(follow_up(follow_ups, manager.files, mailer, on_mailed))
        try:
            operators = OperatorAccounts(redis, settings.redis_prefix)
            yield Runtime(
                settings, redis, knowledge, retriever, manager, sites, operators, telegram
            )
        finally:
            if reminders is not None:
                reminders.cancel()
                with suppress(asyncio.CancelledError):
                    await reminders
            if emails is not None:
                emails.cancel()
                with suppress(asyncio.CancelledError):
                    await emails
            if emailer is not None:
                await emailer.aclose()
            if team_mail is not None:
                await team_mail.aclose()
            if team is not None:
                await team.aclose()
            if telegram is not None:
                await telegram.stop()
            if webhook is not None:
                await webhook.aclose()
            await model.close()
