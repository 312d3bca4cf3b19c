"""The operator API for the knowledge base, under /admin/kb. Bearer-token auth.

Every change is live in every worker at its next question; imports re-calibrate the thresholds.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from adapters.admin import ERRORS
from adapters.admin_auth import operator_auth, signed_in
from adapters.runtime import Runtime
from knowledge import (
    FORMATS,
    Calibration,
    EntryRecord,
    FaqEntry,
    KnowledgeError,
    format_entries,
    parse_entries,
)
from knowledge.formats import slug_id

EntryId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s/\\]+$")]
Format = Literal["jsonl", "csv", "md"]
BY = (
    'Who made this version: the operator whose token it was, "admin token", "command line", '
    'or "" (loaded at start).'
)
MEDIA_TYPES = {"jsonl": "application/jsonl", "csv": "text/csv", "md": "text/markdown"}
Line = Annotated[str, Field(min_length=1, max_length=2000)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Annotated[str, Field(min_length=1, max_length=2000)]
    answer: Annotated[str, Field(min_length=1, max_length=20000)]
    alt_questions: Annotated[list[Line], Field(max_length=100)] = []
    tags: Annotated[list[Tag], Field(max_length=20)] = []
    language: Annotated[str, Field(min_length=2, max_length=16)] = "en"

    def entry(self, entry_id: str) -> FaqEntry:
        return FaqEntry.from_dict(
            {**self.model_dump(exclude={"id"}), "id": entry_id}, where="entry"
        )


class NewEntry(EntryIn):
    id: str | None = Field(
        default=None, max_length=128, description="Default: made from the question."
    )


class EntryOut(BaseModel):
    id: str
    question: str
    answer: str
    alt_questions: list[str]
    tags: list[str]
    language: str
    version: int
    created: float
    updated: float
    by: str = Field(description=BY)

    @classmethod
    def of(cls, record: EntryRecord) -> "EntryOut":
        assert record.entry is not None
        return cls(
            **record.entry.to_dict(),
            version=record.version,
            created=record.created,
            updated=record.updated,
            by=record.by,
        )


class VersionOut(BaseModel):
    version: int
    deleted: bool
    updated: float
    by: str = Field(description=BY)
    entry: EntryOut | None


class EntryPage(BaseModel):
    total: int
    offset: int
    items: list[EntryOut]


class HitOut(BaseModel):
    entry: EntryOut
    score: float = Field(description="The fused score the answer thresholds apply to.")
    scores: dict[str, float] = Field(description="phrasing, centroid, answer, lexical")


class SearchOut(BaseModel):
    answer_threshold: float
    faq_threshold: float
    suggest_threshold: float = Field(
        description="Below the answer threshold, at or above: offered as a suggestion."
    )
    calibrated: bool
    hits: list[HitOut]


class Revert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[int, Field(ge=1)]


class ImportOut(BaseModel):
    added: int
    updated: int
    unchanged: int
    removed: int
    version: int
    dry_run: bool
    calibration: "CalibrationOut | None"


class CalibrationOut(BaseModel):
    answer: float
    faq: float
    probes: int
    in_scope_accept: float
    oos_reject: float
    version: int
    at: float
    embedder: str

    @classmethod
    def of(cls, calibration: Calibration) -> "CalibrationOut":
        return cls(**calibration.to_dict())


ImportOut.model_rebuild()

UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {t: {"schema": {"type": "string"}} for t in MEDIA_TYPES.values()},
    }
}


def kb_router(token: str | None) -> APIRouter:
    router = APIRouter(prefix="/admin/kb", dependencies=[operator_auth(token)], responses=ERRORS)

    def runtime(request: Request) -> Runtime:
        return request.app.state.runtime  # type: ignore[no-any-return]

    async def record_of(request: Request, entry_id: str) -> EntryOut:
        return EntryOut.of(await runtime(request).knowledge.get(entry_id))

    @router.get("/entries", response_model=EntryPage)
    async def entries(
        request: Request,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        contains: Annotated[str | None, Query(max_length=200)] = None,
    ) -> EntryPage:
        """Entries by id, a page at a time; `contains` keeps those whose texts include it."""
        records = await runtime(request).knowledge.records()
        if contains:
            needle = contains.casefold()
            records = [r for r in records if r.entry and _mentions(r.entry, needle)]
        page = records[offset : offset + limit]
        return EntryPage(total=len(records), offset=offset, items=[EntryOut.of(r) for r in page])

    @router.post("/entries", response_model=EntryOut, status_code=201)
    async def create(body: NewEntry, request: Request) -> EntryOut:
        entry = body.entry(body.id or slug_id(body.question))
        return EntryOut.of(await runtime(request).knowledge.create(entry, by=signed_in(request)))

    @router.get("/entries/{entry_id}", response_model=EntryOut)
    async def get(request: Request, entry_id: EntryId) -> EntryOut:
        return await record_of(request, entry_id)

    @router.put("/entries/{entry_id}", response_model=EntryOut)
    async def update(body: EntryIn, request: Request, entry_id: EntryId) -> EntryOut:
        """Change an entry; the previous version stays in its history."""
        entry = body.entry(entry_id)
        return EntryOut.of(await runtime(request).knowledge.update(entry, by=signed_in(request)))

    @router.delete("/entries/{entry_id}", status_code=204)
    async def delete(request: Request, entry_id: EntryId) -> None:
        """Remove an entry; it can be brought back with revert."""
        await runtime(request).knowledge.delete(entry_id, by=signed_in(request))

    @router.get("/entries/{entry_id}/history", response_model=list[VersionOut])
    async def history(request: Request, entry_id: EntryId) -> list[VersionOut]:
        """Every version of the entry, oldest first; deletions included."""
        return [
            VersionOut(
                version=r.version,
                deleted=r.deleted,
                updated=r.updated,
                by=r.by,
                entry=None if r.deleted else EntryOut.of(r),
            )
            for r in await runtime(request).knowledge.history(entry_id)
        ]

    @router.post("/entries/{entry_id}/revert", response_model=EntryOut)
    async def revert(body: Revert, request: Request, entry_id: EntryId) -> EntryOut:
        """Make an earlier version current again (as a new version)."""
        store, by = runtime(request).knowledge, signed_in(request)
        return EntryOut.of(await store.revert(entry_id, body.version, by=by))

    @router.get("/search", response_model=SearchOut)
    async def search(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=4000)],
        k: Annotated[int, Query(ge=1, le=50)] = 5,
    ) -> SearchOut:
        """What the assistant would find for a customer's question, with every score."""
        rt = runtime(request)
        hits = await rt.retriever.search(q, k)
        records = await rt.knowledge.get_many([h.entry.id for h in hits])
        thresholds = rt.retriever.thresholds
        return SearchOut(
            answer_threshold=thresholds.answer,
            faq_threshold=thresholds.faq,
            suggest_threshold=thresholds.suggest,
            calibrated=thresholds.calibrated,
            hits=[
                HitOut(entry=EntryOut.of(record), score=h.score, scores=dict(h.scores))
                for h in hits
                if (record := records[h.entry.id]) is not None  # not deleted meanwhile
            ],
        )

    @router.post("/import", response_model=ImportOut, openapi_extra=UPLOAD)
    async def import_file(
        request: Request,
        format: Annotated[Format, Query(description="jsonl, csv or md")],
        mode: Annotated[Literal["merge", "replace"], Query()] = "merge",
        dry_run: Annotated[bool, Query()] = False,
    ) -> ImportOut:
        """Import a whole FAQ file (the request body) in one step: an invalid line changes
        nothing and the error names it. `replace` removes entries the file does not have."""
        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KnowledgeError("The uploaded file is not UTF-8 text.") from exc
        entries = parse_entries(text, format, "upload")
        rt = runtime(request)
        if not dry_run:
            await rt.retriever.prepare(entries)  # every worker then finds the vectors cached
        by = signed_in(request)
        result = await rt.knowledge.import_entries(entries, mode, dry_run=dry_run, by=by)
        calibration = None
        if not dry_run and (result.added or result.updated or result.removed):
            calibration = CalibrationOut.of(await rt.retriever.calibrate())
        return ImportOut(**result.__dict__, dry_run=dry_run, calibration=calibration)

    @router.get("/export", responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
    async def export(
        request: Request, format: Annotated[Format, Query(description="jsonl, csv or md")] = "jsonl"
    ) -> Response:
        """The whole knowledge base as a file."""
        entries = await runtime(request).knowledge.entries()
        text = format_entries(entries, format) if entries else ""
        return Response(text, media_type=MEDIA_TYPES[format])

    @router.post("/calibrate", response_model=CalibrationOut)
    async def calibrate(request: Request) -> CalibrationOut:
        """Choose the answer thresholds from the knowledge base itself (no labels needed)."""
        return CalibrationOut.of(await runtime(request).retriever.calibrate())

    @router.get("/calibration", response_model=CalibrationOut | None)
    async def calibration(request: Request) -> CalibrationOut | None:
        """The thresholds in use (null: not calibrated yet, defaults apply)."""
        await runtime(request).retriever.refresh()
        current = runtime(request).retriever.calibration
        return None if current is None else CalibrationOut.of(current)

    assert tuple(MEDIA_TYPES) == FORMATS
    return router


def _mentions(entry: FaqEntry, needle: str) -> bool:
    return any(needle in t.casefold() for t in (entry.id, *entry.texts, entry.answer))
