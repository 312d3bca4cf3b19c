"""Every setting of answerdesk, read from ANSWERDESK_* environment variables and `.env`."""

import os
from email.utils import parseaddr
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from pydantic import Field, HttpUrl, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.email_follow_ups import Smtp
from bot import TeamHours, hours_from


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "answerdesk"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANSWERDESK_", env_file=".env", extra="ignore")

    # Where the bundled Redis keeps its append-only file and the model cache lives.
    data_dir: Path = Field(default_factory=default_data_dir)
    # redis://… or unix://…; empty: answerdesk starts its own redis-server in data_dir.
    redis_url: str | None = None
    redis_prefix: str = "answerdesk"
    # Loaded into the knowledge base at start when it is empty; empty: the bundled sample FAQ.
    faq_file: Path | None = None

    # Empty: the bundled SmolLM2-135M-Instruct GGUF. Else a GGUF file, HF directory or hub id.
    model: str | None = None
    model_cache_dir: Path | None = None  # default: data_dir/models
    # bfloat16 with cpu_kernels is the fastest on a CPU that computes in bfloat16 (AVX-512 BF16,
    # AMX; README, "The model"); auto picks it there and float32 elsewhere.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # bfloat16: linear layers on oneDNN-prepacked weights, plus 4-bit or int8 copies for decode
    # steps; float32: float16 copies for decode steps (fbgemm, AVX2). False: exact float32.
    cpu_kernels: bool = True
    # bitsandbytes weight quantization of the local model: none, int8 (8-bit) or nf4 (4-bit).
    quantization: Literal["none", "int8", "nf4"] = "none"
    # LoRA adapters to load, name -> peft directory (JSON: {"support": "/srv/adapters/support"});
    # a request picks one by name, `adapter` is the default ("base": none). "grounding" is the
    # shipped grounding adapter (engine/grounding_adapter), the default for the bundled model.
    adapters: dict[str, Path] = Field(default_factory=dict)
    adapter: str | None = None
    threads: int | None = None
    # Replies generated together in one batch, and requests that may wait for a place in it;
    # more get the closest FAQ entry (or a "busy" error) instead of waiting.
    model_max_batch: int = Field(default=8, ge=1, le=256)
    model_max_waiting: int = Field(default=8, ge=0)
    # A new reply that would wait longer than this for a place in the batch is told "busy" at
    # once (the chat then gives the closest FAQ entry), whatever room the line has.
    model_max_wait_s: float = Field(default=5.0, gt=0)
    # Tokens guessed from the prompt and checked in one step while one greedy reply runs alone.
    prompt_lookup: int = Field(default=10, ge=0, le=64)
    # Memory for the keys and values of recent prompts: a prompt that begins like one of them
    # (the instructions, the same FAQ entries, a session's earlier turns) runs only the rest.
    prompt_cache_mb: float = Field(default=128, ge=0)
    # An OpenAI-compatible model server (vLLM, TGI, another answerdesk) to use instead of the
    # local model: its base URL (http://gpu-box:8000/v1), key, and the model name to ask for.
    model_url: str | None = None
    model_api_key: str | None = Field(default=None, repr=False)
    model_timeout_s: float = Field(default=60, gt=0)
    max_new_tokens: int = Field(default=160, ge=1, le=2048)
    # A generated reply not finished within this many seconds gives way to the closest FAQ entry.
    reply_timeout_s: float = Field(default=30, gt=0)
    # Empty: the bundled all-MiniLM-L6-v2. Else a sentence-transformers model directory, such as
    # one `answerdesk kb tune` wrote.
    embedder: str | None = None
    # auto: bfloat16 on a CPU that computes in it (AVX-512 BF16, AMX), where it encodes the FAQ
    # in about half the time; float32 elsewhere.
    embedder_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # onnx: customers' questions are encoded by onnxruntime (float32, 2-3x faster for one
    # question); torch: by the embedder above.
    query_encoder: Literal["onnx", "torch"] = "onnx"

    business_name: str = "Pinecone Outfitters"
    # Unset: the thresholds `answerdesk kb calibrate` chose for the knowledge base.
    faq_threshold: float | None = Field(default=None, ge=-1, le=1)
    grounded_threshold: float | None = Field(default=None, ge=-1, le=1)
    max_message_chars: int = Field(default=4000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)  # larger request bodies get 413
    max_import_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)  # FAQ file uploads
    shutdown_grace_s: int = Field(default=15, ge=0)  # SIGTERM: time for replies in flight
    session_ttl_days: float = Field(default=30, gt=0)
    # Messages one customer may send, in the `limits` notation ("20/minute", "5 per 10 seconds").
    rate_limit: str = "20/minute"
    # Consecutive unanswerable questions before a human is called in; 0 never.
    handoff_after_fallbacks: int = Field(default=3, ge=0)
    # A conversation an operator took and has not written in for this long goes back to the
    # assistant at the customer's next message; 0: never.
    operator_idle_minutes: float = Field(default=60, ge=0)
    # Bearer token of the operator API (/admin/…); empty: the operator API is disabled.
    admin_token: str | None = Field(default=None, repr=False)
    history_max_turns: int = Field(default=200, ge=2)
    # Where the figures' days begin and end (GET /admin/stats): an IANA time zone name.
    time_zone: str = "UTC"
    # Told each time a customer starts waiting for a person: a webhook URL of the operators' team
    # chat (Slack, Mattermost, Rocket.Chat, Discord's …/slack URL) or any HTTP endpoint, which
    # gets a JSON POST whose `text` says so. Empty: no notifications.
    handoff_webhook_url: HttpUrl | None = Field(default=None, repr=False)
    # A customer still waiting this long (no operator took them) is posted there once more;
    # 0: never.
    handoff_remind_minutes: float = Field(default=10, ge=0)
    # When the operators work, in OpenStreetMap's opening_hours syntax ("Mo-Fr 09:00-17:00;
    # PH off"), in `time_zone`: a customer put in line outside them while no one has the
    # operator desk open is told when the team is back, and reminders wait for it. Empty: none.
    opening_hours: str = ""
    # The country (ISO 3166 code, such as DE) whose public holidays `PH` in opening_hours means.
    holidays_country: str = ""
    # The From of the e-mails below, which customers' replies reach, such as
    # "Pinecone Outfitters <support@pinecone.example>".
    mail_from: str = ""
    # An operator message that no page of a web chat's customer showed (they closed it) is
    # e-mailed to the address they left while waiting for a person, over this SMTP server:
    # smtp://user:password@mail.example.com:587 (STARTTLS when the server offers it) or
    # smtps://…:465. Empty: not e-mailed (the operator desk shows the address to write to).
    smtp_url: SecretStr | None = Field(default=None, repr=False)
    # How long an operator message may stay unseen before it is e-mailed.
    email_after_minutes: float = Field(default=5, gt=0)
    # The team's address (a shared mailbox or a list), told by e-mail over that SMTP server of
    # each customer who waits for a person, as the webhook and the Telegram team chat are.
    # Empty: not e-mailed.
    team_email: str = ""
    # The address this server is reached at (https://support.example.com): notifications link to
    # its operator desk. Empty: they carry no link.
    public_url: HttpUrl | None = None

    # Telegram: the token from @BotFather; empty: no Telegram bot.
    telegram_token: str | None = Field(default=None, repr=False)
    # Another Bot API server (a local telegram-bot-api, or a test double); empty: Telegram's.
    telegram_api_url: str | None = None
    # The operators' Telegram group (its chat id, such as -1001234567890, which /teamchat in the
    # group tells): the bot posts each customer who waits for a person there, and operators
    # answer them by replying (adapters/telegram_team.py). Empty: none.
    telegram_team_chat: int | None = None
    telegram_greeting: str = (
        "Hello! I'm the {business} assistant. Ask me anything about orders, shipping, returns, "
        "payments or your account. Send /human to talk to a person, /reset to start over."
    )
    telegram_help: str = (
        'Type your question in your own words, for example "How long does shipping take?". '
        "I answer from our FAQ and tell you when I don't know. /human brings in a person, "
        "/reset starts over."
    )

    # The demo site: its key works from this server's own pages and from non-browser clients,
    # and calls without a site key mean it. Set it empty in production.
    demo_site_key: str | None = "demo"

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"

    @field_validator("handoff_webhook_url", "public_url", "telegram_team_chat", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("smtp_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("smtp_url")
    @classmethod
    def _usable_smtp(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            Smtp.from_url(value.get_secret_value())  # BadSmtpUrl is a ValueError: says why
            sender = info.data.get("mail_from", "")
            if "@" not in parseaddr(sender)[1]:
                raise ValueError(
                    "e-mails need a From address too: set ANSWERDESK_MAIL_FROM, such as "
                    '"Pinecone Outfitters <support@pinecone.example>"'
                )
        return value

    @field_validator("team_email")
    @classmethod
    def _team_address(cls, value: str, info: ValidationInfo) -> str:
        if value and "@" not in parseaddr(value)[1]:
            raise ValueError("give one e-mail address, such as support-team@pinecone.example")
        if value and info.data.get("smtp_url") is None:
            raise ValueError("e-mailing the team needs ANSWERDESK_SMTP_URL (and MAIL_FROM) too")
        return value

    @field_validator("telegram_team_chat")
    @classmethod
    def _a_group(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("telegram_token"):
            raise ValueError("the operators' Telegram chat needs ANSWERDESK_TELEGRAM_TOKEN too")
        if value is not None and value >= 0:
            raise ValueError(
                "a group's chat id is negative (such as -1001234567890); send /teamchat in "
                "the group to learn it"
            )
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone; use a name such as Europe/Berlin") from exc
        return value

    @field_validator("opening_hours")
    @classmethod
    def _readable_hours(cls, value: str) -> str:
        hours_from(value, ZoneInfo("UTC"))  # BadOpeningHours is a ValueError: says what is wrong
        return value

    @field_validator("holidays_country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        hours_from("PH off" if value else "", ZoneInfo("UTC"), value)
        return value.upper()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def hours(self) -> TeamHours | None:
        """The operators' working hours, or None when none are set."""
        return hours_from(self.opening_hours, self.zone, self.holidays_country)

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def operator_desk_url(self) -> str | None:
        return None if self.public_url is None else str(self.public_url).rstrip("/") + "/operator"


def load_settings() -> Settings:
    """The settings of a command; a bad value stops it with the variable's name and what is
    wrong (never its value, which may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        wrong = "; ".join(
            f"{Settings.model_config['env_prefix']}{str(e['loc'][0]).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise click.ClickException(f"Bad setting: {wrong}.") from exc
