"""The channel-free conversation core: sessions in Redis, answer modes, prompt assembly."""

from bot.errors import ConversationError, StorageUnavailable
from bot.keys import SessionKeys
from bot.manager import AnswerPolicy, ConversationManager, InvalidMessage
from bot.messages import Inbound, Mode, Reply, ReplyChunk, ReplyEvent, Source, Turn
from bot.prompt import REFUSAL, build_messages
from bot.session_store import SessionStore

__all__ = [
    "REFUSAL",
    "AnswerPolicy",
    "ConversationError",
    "ConversationManager",
    "Inbound",
    "InvalidMessage",
    "Mode",
    "Reply",
    "ReplyChunk",
    "ReplyEvent",
    "SessionKeys",
    "SessionStore",
    "Source",
    "StorageUnavailable",
    "Turn",
    "build_messages",
]
