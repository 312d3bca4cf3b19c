"""One FAQ entry, as operators write it."""

import re
from dataclasses import asdict, dataclass
from typing import Any

from knowledge.errors import KnowledgeError

_ID = re.compile(r"^[^\s/\\]{1,128}$")


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    answer: str
    alt_questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    language: str = "en"

    @property
    def texts(self) -> tuple[str, ...]:
        """Every phrasing a customer's question is matched against."""
        return (self.question, *self.alt_questions)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["alt_questions"] = list(self.alt_questions)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "entry") -> "FaqEntry":
        """Validate `data`; a KnowledgeError names `where` and the field that is wrong."""
        if not isinstance(data, dict):
            raise KnowledgeError(f"{where}: expected a JSON object, got {type(data).__name__}")
        for name in ("id", "question", "answer"):
            value = data.get(name)
            if not isinstance(value, str):
                raise KnowledgeError(f"{where}: field '{name}' is required and must be a string")
        if not _ID.match(data["id"]):
            raise KnowledgeError(
                f"{where}: field 'id' must be 1-128 characters without spaces or slashes "
                f"(got {data['id']!r})"
            )
        if not data["question"].strip():
            raise KnowledgeError(f"{where}: field 'question' must not be empty")
        lists = {}
        for name in ("alt_questions", "tags"):
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise KnowledgeError(f"{where}: field '{name}' must be a list of strings")
            lists[name] = tuple(v.strip() for v in value if v.strip())
        language = data.get("language", "en")
        if not isinstance(language, str) or not language:
            raise KnowledgeError(f"{where}: field 'language' must be a language code like 'en'")
        return cls(
            id=data["id"],
            question=data["question"].strip(),
            answer=data["answer"].strip(),
            alt_questions=lists["alt_questions"],
            tags=lists["tags"],
            language=language,
        )
