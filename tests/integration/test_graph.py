"""The workspace knowledge graph end to end: real workers and the fake OpenRouter build it, the dashboard's API
and the CLI read, curate, export and delete (issue 39)."""

from __future__ import annotations

import subprocess

import requests
from worker_contracts import Sender

from tests.support.helpers import BIN, ROOT, WEB_TOKEN, db_query, run_cli, wait_for
from tests.support.knowledge import asset_record

BEARER = {"Authorization": f"Bearer {WEB_TOKEN}"}


def _send(env: dict[str, str], client, asset_id: str, text: str, workspace: str) -> None:
    from pathlib import Path

    Path(env["STORAGE_ROOT"], f"{asset_id}.txt").write_text(text)
    Sender(client).process_asset(asset_id, f"file:{asset_id}.txt", workspace=workspace)


def _done(env: dict[str, str], *assets: str) -> None:
    wait_for(
        lambda: all(asset_record(env, a).get("knowledge_status") == "done" for a in assets),
        90,
        0.5,
        f"knowledge of {assets} done",
    )


def _entities(base: str, workspace: str, **params: str) -> list[dict]:
    answer = requests.get(f"{base}/api/entities", params={"workspace": workspace, **params}, headers=BEARER)
    assert answer.status_code == 200, answer.text
    return answer.json()["entities"]


def test_workspaces_search_export_curation_and_exact_deletion(
    knowledge_env, start_worker, start_web, redis_client
):
    import networkx

    start_worker(env=knowledge_env, threads=4)
    _send(knowledge_env, redis_client, "g1", "Romashka met Lyutik in Moscow about Vasilek.", "w1")
    _send(knowledge_env, redis_client, "g2", "Romashka and Kaluga signed with Vasilek.", "w1")
    _send(knowledge_env, redis_client, "g3", "Romashka met Lyutik in Moscow about Vasilek.", "w2")
    _done(knowledge_env, "g1", "g2", "g3")
    base, env = start_web()
    assert asset_record(env, "g1")["workspace"] == "w1" and asset_record(env, "g1")["knowledge_entities"] == 4

    # one graph per workspace: the same names in w2 are other entities
    w1, w2 = _entities(base, "w1"), _entities(base, "w2")
    romashka = next(e for e in w1 if e["name"] == "Romashka")
    assert romashka["assets"] == 2 and romashka["mentions"] == 2
    assert {e["id"] for e in w1}.isdisjoint({e["id"] for e in w2})
    # search by any alias, case- and ё-insensitively, through a transliteration or a case form
    for q in ("romashka", "РОМАШКА", "ромашки", "omash"):
        assert [e["name"] for e in _entities(base, "w1", q=q)] == ["Romashka"], q
    one = requests.get(f"{base}/api/entities/{romashka['id']}", headers=BEARER).json()
    assert sorted(m["asset_id"] for m in one["mentions"]) == ["g1", "g2"] and all(
        m["page"] is None for m in one["mentions"]
    )
    assert {r["type"] for r in one["relations"]} and all(
        romashka["id"] in (r["source"], r["target"]) for r in one["relations"]
    )
    asset_graph = requests.get(f"{base}/api/assets/g1/graph", headers=BEARER).json()
    assert {e["name"] for e in asset_graph["entities"]} == {"Romashka", "Lyutik", "Moscow", "Vasilek"}
    assert all("id" in e for e in asset_graph["entities"]) and all(
        "source_id" in r for r in asset_graph["relations"]
    )

    # exports: JSON, GraphML that networkx reads, an idempotent Cypher script; the CLI prints the same
    graph = requests.get(f"{base}/api/graph", params={"workspace": "w1"}, headers=BEARER).json()
    assert len(graph["nodes"]) == 5 and graph["edges"]
    graphml = requests.get(
        f"{base}/api/graph", params={"workspace": "w1", "format": "graphml"}, headers=BEARER
    )
    parsed = networkx.parse_graphml(graphml.text)
    assert parsed.number_of_nodes() == 5 and parsed.number_of_edges() == len(graph["edges"])
    assert {d["name"] for _n, d in parsed.nodes(data=True)} == {n["name"] for n in graph["nodes"]}
    cypher = requests.get(
        f"{base}/api/graph", params={"workspace": "w1", "format": "cypher"}, headers=BEARER
    ).text
    assert cypher.count("MERGE (e:Entity") == 5 and "CREATE " not in cypher.replace("CREATE CONSTRAINT", "")
    cli = run_cli(env, "graph", "export", "--workspace", "w1", "--format", "graphml")
    assert cli.returncode == 0 and networkx.parse_graphml(cli.stdout).number_of_nodes() == 5

    # curation: merge two entities; the decision survives a rebuild from the stored chunks (no LLM call)
    ids = {e["name"]: e["id"] for e in w1}
    merged = requests.post(
        f"{base}/api/entities/merge", json={"ids": [ids["Lyutik"], ids["Kaluga"]]}, headers=BEARER
    )
    assert merged.status_code == 200 and sorted(merged.json()["aliases"]) == ["Kaluga", "Lyutik"]
    assert run_cli(env, "graph", "rebuild").returncode == 0
    assert sorted(next(e for e in _entities(base, "w1", q="kaluga"))["aliases"]) == ["Kaluga", "Lyutik"]
    split = requests.post(
        f"{base}/api/entities/{merged.json()['id']}/split", json={"aliases": ["Kaluga"]}, headers=BEARER
    )
    assert split.status_code == 200 and len(split.json()["entities"]) == 2
    audit = [a["action"] for a in requests.get(f"{base}/api/audit", headers=BEARER).json()]
    assert "entity-merge" in audit and "entity-split" in audit

    # deletion: g2 alone mentioned Kaluga; afterwards the graph is w1 as g1 alone builds it
    viewer = subprocess.run(
        [str(BIN / "worker"), "users", "add", "vera", "--role", "viewer"],
        cwd=ROOT,
        env=env,
        input="viewer-password-1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert viewer.returncode == 0
    deleted = requests.delete(f"{base}/api/assets/g2", headers=BEARER)
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "g2"}
    assert run_cli(env, "asset", "g2").returncode == 1
    after = {e["name"]: e for e in _entities(base, "w1")}
    assert set(after) == {"Romashka", "Lyutik", "Moscow", "Vasilek"} and after["Romashka"]["assets"] == 1
    assert db_query(env, "select count(*) from kg_mention where asset_id = 'g2'") == [(0,)]
    assert db_query(env, "select count(*) from asset_text where asset_id = 'g2'") == [(0,)]
    assert requests.delete(f"{base}/api/assets/g2", headers=BEARER).status_code == 404
    assert "asset-delete" in [a["action"] for a in requests.get(f"{base}/api/audit", headers=BEARER).json()]
    assert run_cli(env, "asset", "delete", "g1").returncode == 0
    assert _entities(base, "w1") == [] and len(_entities(base, "w2")) == 4  # another workspace is untouched


def test_the_gold_set_and_the_sequence_property_hold_on_postgresql(pg_url):
    """The same resolution and store on PostgreSQL (required for more than one host): the gold set's bars, and a
    sequence of uploads, re-uploads and deletions equal to a build from scratch."""
    import random

    from tests.support.gold import DOCUMENTS, ingest, score, snapshot
    from tests.support.helpers import pg_schema_url
    from worker_service.database import init_database, migrate, session
    from worker_service.knowledge.graphstore import remove_contribution

    init_database(pg_schema_url(pg_url, "graph_gold"))
    migrate()
    for doc_id, doc in DOCUMENTS.items():
        ingest(f"asset-{doc_id}", doc["workspace"], doc)
    result = score({d: f"asset-{d}" for d in DOCUMENTS})
    assert result.pairwise_f1 >= 0.95 and result.over_merges == [] and result.page_accuracy == 1.0
    rng, contents = random.Random(7), {f"asset-{d}": d for d in DOCUMENTS}
    for _ in range(25):
        asset = rng.choice(sorted(contents) + ["x1", "x2"])
        if rng.random() < 0.6:
            contents[asset] = rng.choice(list(DOCUMENTS))
            ingest(asset, DOCUMENTS[contents[asset]]["workspace"], DOCUMENTS[contents[asset]])
        elif asset in contents:
            with session(transaction=True):
                remove_contribution(asset)
            del contents[asset]
    stepped = snapshot()
    init_database(pg_schema_url(pg_url, "graph_scratch"))
    migrate()
    for asset, doc_id in sorted(contents.items()):
        ingest(asset, DOCUMENTS[doc_id]["workspace"], DOCUMENTS[doc_id])
    assert snapshot() == stepped


def test_browser_entities_page_finds_by_any_spelling_shows_pages_and_a_merge_survives_a_rebuild(
    start_web, chromium_path
):
    """Chromium as an operator: the Entities page finds Ромашка by ``romashka`` and by ``ромашки``, shows its
    aliases and the pages of its mentions; a merge made on the page is still there after ``worker graph rebuild``
    (which derives every asset again from the stored chunk results)."""
    from tests.support.browser import ARTIFACTS
    from tests.support.browser import browser_page as _browser_page
    from tests.support.gold import DOCUMENTS, store_as_extracted
    from tests.support.helpers import WEB_PASSWORD
    from worker_service.database import init_database, migrate

    base, env = start_web()
    init_database(env["DATABASE_URL"])
    migrate()
    for doc_id in ("annual-report", "letter-delay", "contract-15"):
        store_as_extracted(doc_id, "default", DOCUMENTS[doc_id], "openai/gpt-4o-mini")
    with _browser_page(chromium_path, f"{base}/entities", "admin", WEB_PASSWORD, 1100) as page:
        for query in ("romashka", "ромашки"):
            page.fill("#entity-q", query)
            page.click("#entity-search")
            rows = page.locator("#entities tbody tr")
            assert rows.count() == 1 and "Romashka" in rows.inner_text(), query
        page.click("#entities tbody tr a")
        aliases = page.inner_text("#aliases")
        assert all(a in aliases for a in ("Romashka", "Ромашки", "ООО «Ромашка»"))
        mentions = page.inner_text("#mentions")
        assert "annual-report\tRomashka\t1" in mentions and "letter-delay\tРомашки\t—" in mentions
        page.screenshot(path=str(ARTIFACTS / "entity.png"), full_page=True)
        romashka = page.url.rsplit("/", 1)[1]
        lyutik = requests.get(f"{base}/api/entities", params={"q": "лютик"}, headers=BEARER).json()[
            "entities"
        ][0]
        page.fill("#merge-other", str(lyutik["id"]))
        page.click("#merge")
        page.wait_for_selector("#flash")
        assert "ООО «Лютик»" in page.inner_text("#aliases")
        assert run_cli(env, "graph", "rebuild").returncode == 0
        page.goto(f"{base}/entities?q=romashka")
        page.click("#entities tbody tr a")
        assert "ООО «Лютик»" in page.inner_text("#aliases") and "Romashka" in page.inner_text("#aliases")
        assert romashka
