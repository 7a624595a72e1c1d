"""Helpers of the knowledge tests: documents of their own text, and reading what the worker stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import redis
from worker_contracts import Sender

from tests.support.helpers import run_cli

DOCUMENT = " ".join(
    f"Paragraph {i}: Alice met Bob in Paris to discuss Acme and the Zenith project with Carol."
    for i in range(60)
)


def asset_record(env: dict[str, str], asset_id: str) -> dict:
    result = run_cli(env, "asset", asset_id, "--json")
    return json.loads(result.stdout) if result.returncode == 0 else {}


def graph_rows(env: dict[str, str], asset_id: str) -> tuple[list, list, tuple]:
    """The asset's part of its workspace graph as stored: entities (name, type, mentions in this asset),
    relations (source name, target name, type, weight summed over this asset's chunks), and its LLM usage."""
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        entities = conn.execute(
            "select e.name, e.type, count(*) from kg_mention m join kg_alias a on m.alias_id = a.id "
            "join kg_entity e on a.entity_id = e.id where m.asset_id=? group by e.id, e.name, e.type",
            (asset_id,),
        ).fetchall()
        relations = conn.execute(
            "select s.name, t.name, r.type, sum(r.weight) from kg_relation r "
            "join kg_alias sa on r.source_id = sa.id join kg_entity s on sa.entity_id = s.id "
            "join kg_alias ta on r.target_id = ta.id join kg_entity t on ta.entity_id = t.id "
            "where r.asset_id=? group by s.id, t.id, r.type",
            (asset_id,),
        ).fetchall()
        usage = conn.execute(
            "select requests, prompt_tokens, completion_tokens, cost_usd from llm_usage where asset_id=?",
            (asset_id,),
        ).fetchone()
    return entities, relations, usage


def send_document(
    env: dict[str, str], client: redis.Redis, asset_id: str, text: str = DOCUMENT, **kwargs
) -> None:
    Path(env["STORAGE_ROOT"], f"{asset_id}.txt").write_text(text)
    Sender(client).process_asset(asset_id, f"file:{asset_id}.txt", **kwargs)


def document(tag: str, paragraphs: int = 60) -> str:
    """A text of its own (no chunk in common with another tag's), about the same people."""
    return " ".join(
        f"Paragraph {tag}-{i}: Alice met Bob in Paris to discuss Acme and the Zenith project with Carol."
        for i in range(paragraphs)
    )
