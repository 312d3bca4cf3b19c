"""The `answerdesk` command."""

import asyncio
import logging
from datetime import datetime

import click
from redis.asyncio import Redis

from adapters.kb_cli import kb
from adapters.redis_server import in_redis, open_redis
from adapters.settings import Settings, load_settings
from adapters.train_cli import evaluation, train
from knowledge import KnowledgeError, read_entries


@click.group()
def main() -> None:
    """answerdesk: a self-hosted customer-support assistant that answers from your FAQ."""


@main.command()
@click.option("--host", help="Interface to listen on (default 127.0.0.1, ANSWERDESK_HOST).")
@click.option("--port", type=int, help="Port to listen on (default 8000, ANSWERDESK_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the chat API, the chat page and health checks over HTTP."""
    import uvicorn

    from adapters.web import create_app

    settings = load_settings()
    if settings.faq_file:
        try:
            read_entries(settings.faq_file)  # fail here, clearly, rather than inside the server
        except KnowledgeError as exc:
            raise click.ClickException(f"ANSWERDESK_FAQ_FILE: {exc}") from exc
    setup_logging(settings)
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": settings.port if port is None else port}
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go through the handler above
        loop="uvloop",  # compiled event loop and HTTP parser (see pyproject.toml)
        http="httptools",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


def setup_logging(settings: Settings) -> None:
    """One JSON object per line (or plain text), each with the request id of its request."""
    from asgi_correlation_id import CorrelationIdFilter
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler()
    handler.addFilter(CorrelationIdFilter(name="request_id", default_value="-"))
    fields = "%(asctime)s %(levelname)s %(name)s %(correlation_id)s %(message)s"
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                fields, rename_fields={"correlation_id": "request_id", "levelname": "level"}
            )
        )
    else:
        handler.setFormatter(logging.Formatter(fields.replace(" %(message)s", ": %(message)s")))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    # bitsandbytes (imported by peft even without quantization) warns on every start that it could
    # not download an optional 4-bit CPU kernel from the Hugging Face Hub; answerdesk never
    # downloads models, so the advice in it cannot apply.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # httpx2 logs every request's URL at INFO; a webhook's URL is its secret (Slack's is its key),
    # and a model server's requests are one line per reply. Its warnings still show.
    logging.getLogger("httpx2").setLevel(logging.WARNING)


@main.group(invoke_without_command=True)
@click.pass_context
def telegram(ctx: click.Context) -> None:
    """Run the Telegram bot with long polling (no public URL needed).

    For webhook mode instead, run `answerdesk serve` behind HTTPS and register its URL once with
    `answerdesk telegram set-webhook https://HOST/telegram/webhook`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from adapters.runtime import build_runtime
    from adapters.telegram_service import TelegramSetupError

    settings = load_settings()
    setup_logging(settings)
    if not settings.telegram_token:
        raise click.ClickException(
            "ANSWERDESK_TELEGRAM_TOKEN is not set: create a bot with @BotFather and put its "
            "token in that variable."
        )

    async def run() -> None:
        async with build_runtime(settings) as runtime:
            assert runtime.telegram is not None
            await runtime.telegram.poll()

    try:
        asyncio.run(run())
    except TelegramSetupError as exc:
        raise click.ClickException(str(exc)) from exc


@telegram.command("set-webhook")
@click.argument("url")
def telegram_set_webhook(url: str) -> None:
    """Tell Telegram to send updates to URL (https://HOST/telegram/webhook) with a new secret."""
    from adapters.telegram_service import TelegramSetupError, make_bot, register_webhook

    settings = load_settings()

    async def run() -> None:
        async with open_redis(settings.redis_url, settings.data_dir) as redis:
            bot = make_bot(settings.telegram_token, settings.telegram_api_url)
            try:
                await register_webhook(bot, redis, settings.redis_prefix, url)
            finally:
                await bot.session.close()

    try:
        asyncio.run(run())
    except TelegramSetupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Telegram now sends updates to {url}; `answerdesk serve` checks their secret.")


@main.group()
def sites() -> None:
    """Web sites that may embed the chat widget."""


@sites.command("add")
@click.argument("name")
@click.option("--origin", "origins", multiple=True, required=True, help="https://shop.example")
@click.option("--title", help="The widget's title.")
@click.option("--greeting", help="The widget's first message.")
@click.option("--colour", help="#rrggbb")
@click.option("--language", help="e.g. en")
@click.option("--privacy-url", help="The site's privacy notice, linked under the widget's input.")
def sites_add(name: str, origins: tuple[str, ...], **style: str | None) -> None:
    """Register a site and print the script tag for its pages."""
    from adapters.sites import Site, SiteError, SiteRegistry

    settings = load_settings()
    given = {k: v for k, v in style.items() if v}

    async def add(redis: Redis) -> Site:
        return await SiteRegistry(redis, settings.redis_prefix).add(name, list(origins), **given)

    try:
        key = in_redis(settings, add).key
    except SiteError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"site key: {key}")
    tag = f'<script src="https://ANSWERDESK-HOST/widget.js" data-site-key="{key}" async></script>'
    click.echo(f"put on the site's pages: {tag}")


@sites.command("list")
def sites_list() -> None:
    """Registered sites: key, name, origins."""
    from adapters.sites import SiteRegistry

    settings = load_settings()
    for site in in_redis(
        settings,
        lambda redis: SiteRegistry(redis, settings.redis_prefix).all(),
    ):
        click.echo(f"{site.key}\t{site.name}\t{' '.join(site.origins)}")


@sites.command("rm")
@click.argument("key")
def sites_rm(key: str) -> None:
    """Remove a site; its widget stops working."""
    from adapters.sites import SiteRegistry

    settings = load_settings()
    if not in_redis(
        settings,
        lambda redis: SiteRegistry(redis, settings.redis_prefix).remove(key),
    ):
        raise click.ClickException(f"No site with key {key}.")
    click.echo(f"removed {key}")


@main.command("test-webhook")
def test_webhook() -> None:
    """Post a test notification to the team chat (ANSWERDESK_HANDOFF_WEBHOOK_URL) and say how
    it answered."""
    import httpx2

    from adapters.handoff_webhook import HandoffWebhook, described

    settings = load_settings()
    if settings.handoff_webhook_url is None:
        raise click.ClickException(
            "ANSWERDESK_HANDOFF_WEBHOOK_URL is not set: set it to your team chat's incoming "
            "webhook URL (Slack, Mattermost, a Telegram bot's sendMessage URL, …)."
        )

    async def run() -> str:
        webhook = HandoffWebhook(str(settings.handoff_webhook_url), settings.operator_desk_url)
        try:
            return await webhook.check()
        finally:
            await webhook.aclose()

    try:
        answered = asyncio.run(run())
    except httpx2.HTTPError as exc:
        raise click.ClickException(
            f"The team chat did not take the test notification: {described(exc)}. Check "
            "ANSWERDESK_HANDOFF_WEBHOOK_URL."
        ) from exc
    click.echo(f"Posted a test notification; the team chat answered {answered}. Look for it there.")


@main.group()
def operators() -> None:
    """Operator accounts: each operator signs in to the operator desk and API with a token of
    their own."""


@operators.command("add")
@click.argument("name")
def operators_add(name: str) -> None:
    """Add an operator (NAME is what customers see) and print their token, shown this once."""
    from adapters.operators import OperatorAccounts, OperatorError

    settings = load_settings()
    try:
        token = in_redis(
            settings,
            lambda r: OperatorAccounts(r, settings.redis_prefix).add(name),
        )
    except OperatorError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"token of {name.strip()}: {token}")
    desk = settings.operator_desk_url or "/operator"
    click.echo(f"Give it to them alone: it signs in to the operator desk ({desk}) as them.")


@operators.command("list")
def operators_list() -> None:
    """The operators, with the day each was added (their tokens are not kept)."""
    from adapters.operators import OperatorAccounts

    settings = load_settings()
    for account in in_redis(
        settings,
        lambda r: OperatorAccounts(r, settings.redis_prefix).all(),
    ):
        added = datetime.fromtimestamp(account.created, settings.zone)
        click.echo(f"{account.name}\tadded {added:%Y-%m-%d}")


@operators.command("rm")
@click.argument("name")
def operators_rm(name: str) -> None:
    """Remove an operator: their token stops working at once (conversations they have taken
    stay theirs until handed back; or go back to the assistant after
    ANSWERDESK_OPERATOR_IDLE_MINUTES)."""
    from adapters.operators import OperatorAccounts

    settings = load_settings()
    if not in_redis(
        settings,
        lambda r: OperatorAccounts(r, settings.redis_prefix).remove(name),
    ):
        raise click.ClickException(f"No operator named {name!r} (answerdesk operators list).")
    click.echo(f"removed {name}; their token no longer signs in")


main.add_command(kb)
main.add_command(train)
main.add_command(evaluation)


@main.command()
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=7,
    show_default=True,
    help="How many days (ANSWERDESK_TIME_ZONE's), today included.",
)
def stats(days: int) -> None:
    """How the assistant did: messages by how they were answered, handoffs, ratings, and the
    FAQ entries most answered from (as GET /admin/stats)."""
    from bot import ConversationStats, SessionKeys, SessionStore, StatsReport
    from knowledge import KnowledgeKeys, KnowledgeStore

    settings = load_settings()

    async def work(redis: Redis) -> tuple[StatsReport, dict[str, str]]:
        sessions = SessionStore(redis, SessionKeys(settings.redis_prefix))
        report = await ConversationStats(sessions, settings.zone).report(days)
        store = KnowledgeStore(redis, KnowledgeKeys(settings.redis_prefix))
        records = await store.get_many([entry for entry, _ in report.entries[:10]])
        questions = {i: r.entry.question for i, r in records.items() if r and r.entry}
        return report, questions

    report, questions = in_redis(settings, work)
    columns = (
        "conversations", "messages", "answered", "faq", "grounded", "fallback", "handoffs",
        "taken", "average_wait", "thumbs_up", "thumbs_down", "operator_up", "operator_down",
    )  # fmt: skip
    rows = [(d.day, d.figures) for d in report.days] + [("total", report.total)]
    click.echo("\t".join(("day", *columns)))
    for day, figures in rows:
        wait = figures.average_wait_s
        shown = {
            "answered": "-" if figures.answered is None else f"{figures.answered:.0%}",
            "average_wait": "-" if wait is None else _wait(wait),
        }
        cells = [shown.get(c) or str(getattr(figures, c)) for c in columns]
        click.echo("\t".join((day, *cells)))
    if report.entries:
        click.echo("\nmost answered from:")
    for entry, answers in report.entries[:10]:
        click.echo(f"{answers}\t{entry}\t{questions.get(entry, '(deleted)')}")
    if report.operator_names:
        click.echo("\ncustomers taken by, and their ratings of the help:")
    for operator in report.operator_names:
        up, down = report.ratings.get(operator, (0, 0))
        click.echo(f"{report.operators_taken.get(operator, 0)}\t👍 {up}\t👎 {down}\t{operator}")


def _wait(seconds: float) -> str:
    """A wait as people say it: 45 s, 3 min 20 s, 2 h 5 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"
