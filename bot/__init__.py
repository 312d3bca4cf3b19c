"""The channel-free conversation core: sessions in Redis, answer modes, prompt assembly, human
handoff, feedback and the unanswered queue."""

from bot.erasure import Erased
from bot.errors import ConversationError, StorageUnavailable
from bot.feedback import FeedbackLog, Rating, UnansweredItem, UnknownItem, UnknownReply
from bot.files import MAX_BYTES as MAX_FILE_BYTES
from bot.files import BadFile, SessionFiles, StoredFile, words_of
from bot.follow_ups import FollowUp, FollowUps
from bot.handoff import (
    HandoffDesk,
    HandoffError,
    HandoffNotifier,
    QuietNotifier,
    TeamStatus,
    UnknownSession,
    Waiting,
)
from bot.keys import SessionKeys
from bot.manager import (
    ConversationManager,
    DuplicateMessage,
    InvalidMessage,
    Observer,
)
from bot.messages import (
    Inbound,
    Mode,
    Reply,
    ReplyChunk,
    ReplyEvent,
    SessionInfo,
    Source,
    State,
    Turn,
)
from bot.outbox import Outbox, OutboxMessage
from bot.policy import AnswerPolicy
from bot.presence import ON_DUTY_S, Presence
from bot.prompt import REFUSAL, build_messages
from bot.rate_limit import RateLimited, RateLimiter
from bot.saved_replies import BadSavedReply, SavedReplies, SavedReply
from bot.session_store import SessionStore
from bot.stats import ConversationStats, DayFigures, Figures, StatsReport
from bot.team_hours import BadOpeningHours, TeamHours, hours_from
from bot.unanswered_topics import Topic, UnansweredTopics

__all__ = [
    "MAX_FILE_BYTES",
    "ON_DUTY_S",
    "REFUSAL",
    "AnswerPolicy",
    "BadFile",
    "BadOpeningHours",
    "BadSavedReply",
    "ConversationError",
    "ConversationManager",
    "ConversationStats",
    "DayFigures",
    "DuplicateMessage",
    "Erased",
    "FeedbackLog",
    "Figures",
    "FollowUp",
    "FollowUps",
    "HandoffDesk",
    "HandoffError",
    "HandoffNotifier",
    "Inbound",
    "InvalidMessage",
    "Mode",
    "Observer",
    "Outbox",
    "OutboxMessage",
    "Presence",
    "QuietNotifier",
    "RateLimited",
    "RateLimiter",
    "Rating",
    "Reply",
    "ReplyChunk",
    "ReplyEvent",
    "SavedReplies",
    "SavedReply",
    "SessionFiles",
    "SessionInfo",
    "SessionKeys",
    "SessionStore",
    "Source",
    "State",
    "StatsReport",
    "StorageUnavailable",
    "StoredFile",
    "TeamHours",
    "TeamStatus",
    "Topic",
    "Turn",
    "UnansweredItem",
    "UnansweredTopics",
    "UnknownItem",
    "UnknownReply",
    "UnknownSession",
    "Waiting",
    "build_messages",
    "hours_from",
    "words_of",
]
