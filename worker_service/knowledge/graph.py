"""Chunking, the extraction schema and validation with one repair (what becomes of the results: knowledge.mentions)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SYSTEM_PROMPT = (
    "You extract a knowledge graph from a document chunk. Return JSON only, matching the schema: "
    "entities (name, type, description) and relations (source, target, type, description, weight 1-10). "
    "Use the most complete name for each entity, short upper-case types (PERSON, ORGANIZATION, PLACE, "
    "PRODUCT, EVENT, CONCEPT), and only relations stated or clearly implied by the text. "
    "Relation source and target must be entity names from your list. Keep the document's language."
)

Text = Annotated[str, Field(min_length=1, max_length=2000)]


class Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Text
    type: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(max_length=4000)] = ""


class Relation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    source: Text
    target: Text
    type: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(max_length=4000)] = ""
    weight: Annotated[float, Field(ge=0, le=100)] = 1.0


class Extraction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    entities: list[Entity] = Field(default_factory=list, max_length=2000)
    relations: list[Relation] = Field(default_factory=list, max_length=5000)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["entities", "relations"],
    "properties": {
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "type", "description"],
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "description": {"type": "string"},
                },
            },
        },
        "relations": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["source", "target", "type", "description", "weight"],
                "properties": {
                    "source": {"type": "string"},
                    "target": {"type": "string"},
                    "type": {"type": "string"},
                    "description": {"type": "string"},
                    "weight": {"type": "number"},
                },
            },
        },
    },
}


def chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Where the chunks of ``text`` start and end: at most ``size`` characters each, cut at a line end where
    there is one in the second half of the window (a Markdown table row is a line: never split across
    chunks), else at a space; each chunk repeats up to ``overlap`` characters of the one before, from the
    start of a line where one is near."""
    overlap = min(overlap, size // 2)
    spans, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n", start + size // 2, end)
            if cut <= start:
                cut = text.rfind(" ", start + size // 2, end)
            if cut > start:
                end = cut
        spans.append((start, end))
        if end >= len(text):
            break
        resume = max(end - overlap, start + 1)
        line = text.find("\n", resume, end)
        start = line + 1 if line != -1 and line + 1 < end else resume
    return [(s, e) for s, e in spans if text[s:e].strip()]


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """The chunks of ``text`` (see chunk_spans), whitespace stripped."""
    return [text[s:e].strip() for s, e in chunk_spans(text, size, overlap)]


def parse_extraction(content: str) -> Extraction:
    """Validate the model's output (providers may ignore strict mode); raises ValueError with the reason."""
    raw = content.strip()
    if raw.startswith("```"):
        raw = re.sub(r"^```(?:json)?\s*|\s*```$", "", raw)
    try:
        return Extraction.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    except ValidationError as exc:
        raise ValueError(f"does not match the schema: {exc.errors()[:3]}") from None


REPAIR_PROMPT = (
    "That output is invalid ({error}). Return only the JSON object matching the schema, nothing else."
)


#: changes whenever what is sent for a chunk changes (prompts, schema): cached results of an older prompt
#: are then not reused (part of every chunk's key)
def prompt_version(system_prompt: str, schema: dict[str, Any], repair_prompt: str) -> str:
    """A short digest of everything sent besides the chunk: any change to it makes every chunk new."""
    return hashlib.sha256(
        "\0".join([system_prompt, json.dumps(schema, sort_keys=True), repair_prompt]).encode()
    ).hexdigest()[:16]


PROMPT_VERSION = prompt_version(SYSTEM_PROMPT, SCHEMA, REPAIR_PROMPT)


def chunk_key(model: str, chunk: str, version: str = PROMPT_VERSION) -> str:
    """What determines a chunk's extraction: its text, the model and the prompt version."""
    return hashlib.sha256("\0".join([model, version, chunk]).encode()).hexdigest()


@dataclass(frozen=True)
class ChunkResult:
    """A chunk's extraction, or why its output stayed invalid after one repair (``extraction`` is None)."""

    extraction: Extraction | None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.extraction is not None

    def to_json(self) -> str:
        return self.extraction.model_dump_json() if self.extraction is not None else (self.error or "invalid")

    @classmethod
    def from_stored(cls, valid: bool, stored: str) -> ChunkResult:
        return cls(Extraction.model_validate_json(stored)) if valid else cls(None, stored)


def extract_chunk(chat: Any, chunk: str) -> ChunkResult:
    """One chunk: a call, and one repair call when the output fails validation.

    The prompt holds nothing but the chunk (no position in the document), so that the same text costs
    one extraction wherever it appears.
    """
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Extract the knowledge graph of this text:\n<<<\n{chunk}\n>>>"},
    ]
    content = chat(messages)
    try:
        return ChunkResult(parse_extraction(content))
    except ValueError as first:
        repair = messages + [
            {"role": "assistant", "content": content[:20_000]},
            {"role": "user", "content": REPAIR_PROMPT.format(error=first)},
        ]
        try:
            return ChunkResult(parse_extraction(chat(repair)))
        except ValueError as second:
            return ChunkResult(None, f"LLM output invalid after one repair attempt: {second}"[:2000])
