"""``worker graph export`` (the workspace graph on standard output) and ``worker graph rebuild`` (every asset's
contribution derived again from the stored chunk results: no LLM call)."""

from __future__ import annotations

import argparse
import sys

from worker_service.cli import common


def cmd_export(args: argparse.Namespace) -> int:
    from worker_service.knowledge.export import render
    from worker_service.knowledge.graphread import workspace_graph

    common.init(common.settings())
    body, _media_type = render(workspace_graph(args.workspace), args.format)
    sys.stdout.write(body if body.endswith("\n") else body + "\n")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from worker_service.knowledge.extract import rebuild_contribution

    settings = common.settings()
    common.init(settings)
    from worker_service.database import Asset, session

    with session():
        query = Asset.select(Asset.asset_id).where(Asset.knowledge_status == "done")
        if args.workspace:
            query = query.where(Asset.workspace == args.workspace)
        assets = [a for (a,) in query.order_by(Asset.asset_id).tuples()]
    rebuilt = missing = 0
    for asset_id in assets:
        if rebuild_contribution(asset_id, settings):
            rebuilt += 1
        else:
            missing += 1
    common.out(
        f"rebuilt {rebuilt} asset(s) from stored chunk results"
        + (f"; {missing} lacked a stored chunk result (send extract_knowledge for them)" if missing else "")
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    graph = sub.add_parser("graph", help="the knowledge graph: export, rebuild").add_subparsers(
        dest="graph_command", required=True
    )
    p = graph.add_parser(
        "export",
        help="print a workspace's graph",
        description="Print a workspace's whole knowledge graph: JSON (nodes, edges), GraphML (any "
        "GraphML reader opens it) or an idempotent Cypher MERGE script for Neo4j. "
        "Example: worker graph export --workspace default --format graphml > g.graphml",
    )
    p.add_argument("--workspace", default="default", help="whose graph (default: default)")
    p.add_argument(
        "--format",
        choices=["json", "graphml", "cypher"],
        default="json",
        help="json (the API's), graphml (any GraphML reader) or cypher (an idempotent MERGE script); "
        "e.g. worker graph export --format graphml > graph.graphml",
    )
    p.set_defaults(func=cmd_export)
    p = graph.add_parser(
        "rebuild",
        help="derive every asset's contribution again from stored chunk results",
        description="Derive the mentions of every asset whose knowledge is done again from the "
        "stored chunk results (no LLM call) and resolve them: after an upgrade, or "
        "after the resolution rules changed.  Example: worker graph rebuild",
    )
    p.add_argument("--workspace", help="only this workspace's assets")
    p.set_defaults(func=cmd_rebuild)
