"""A workspace graph in the formats people take it elsewhere: JSON, GraphML, an idempotent Cypher script.

``render(graph, fmt)`` takes graphread.workspace_graph's dict and returns (text, media type).

* GraphML: one ``<node>`` per entity (name, type, aliases and identifiers as JSON strings, assets, mentions) and
  one ``<edge>`` per relation (type, weight, assets), with ``<key>`` declarations: any GraphML reader opens it.
* Cypher: ``MERGE`` on ``(:Entity {id, workspace})`` and on the relation between two merged entities, then
  ``SET`` of every property: running it twice leaves one node per entity and one relation per edge.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

FORMATS = {
    "json": "application/json",
    "graphml": "application/graphml+xml",
    "cypher": "text/plain; charset=utf-8",
}
_NODE_KEYS = [
    ("name", "string"),
    ("type", "string"),
    ("workspace", "string"),
    ("aliases", "string"),
    ("identifiers", "string"),
    ("assets", "int"),
    ("mentions", "int"),
]
_EDGE_KEYS = [("type", "string"), ("weight", "double"), ("assets", "string")]


def render(graph: dict[str, Any], fmt: str) -> tuple[str, str]:
    if fmt == "graphml":
        return graphml(graph), FORMATS[fmt]
    if fmt == "cypher":
        return cypher(graph), FORMATS[fmt]
    return json.dumps(graph, ensure_ascii=False), FORMATS["json"]


def _node_values(node: dict[str, Any]) -> dict[str, Any]:
    mentions = node["mentions"]
    return {
        "name": node["name"],
        "type": node["type"],
        "workspace": node["workspace"],
        "aliases": json.dumps(node["aliases"], ensure_ascii=False),
        "identifiers": json.dumps(node["identifiers"], ensure_ascii=False),
        "assets": node["assets"],
        "mentions": len(mentions) if isinstance(mentions, list) else mentions,
    }


def graphml(graph: dict[str, Any]) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    lines += [
        f'  <key id="n_{name}" for="node" attr.name="{name}" attr.type="{kind}"/>'
        for name, kind in _NODE_KEYS
    ]
    lines += [
        f'  <key id="e_{name}" for="edge" attr.name="{name}" attr.type="{kind}"/>'
        for name, kind in _EDGE_KEYS
    ]
    lines.append(f'  <graph id={quoteattr(str(graph.get("workspace", "graph")))} edgedefault="directed">')
    for node in graph["nodes"]:
        lines.append(f'    <node id="e{node["id"]}">')
        lines += [f'      <data key="n_{k}">{escape(str(v))}</data>' for k, v in _node_values(node).items()]
        lines.append("    </node>")
    for number, edge in enumerate(graph["edges"]):
        lines.append(f'    <edge id="r{number}" source="e{edge["source"]}" target="e{edge["target"]}">')
        lines += [
            f'      <data key="e_type">{escape(edge["type"])}</data>',
            f'      <data key="e_weight">{float(edge["weight"])}</data>',
            f'      <data key="e_assets">{escape(json.dumps(edge["assets"], ensure_ascii=False))}</data>',
            "    </edge>",
        ]
    lines += ["  </graph>", "</graphml>", ""]
    return "\n".join(lines)


def _literal(value: Any) -> str:
    """A Cypher literal: strings in single quotes with backslash escapes, lists, numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{text}'"


def _relation_type(kind: str) -> str:
    """A relation type as a Cypher identifier, backquoted (any characters survive)."""
    return "`" + kind.replace("`", "``") + "`"


def cypher(graph: dict[str, Any]) -> str:
    lines = [
        "// Knowledge graph of workspace "
        + _literal(graph.get("workspace", ""))
        + ": idempotent, run it again",
        "CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE (e.workspace, e.id) IS UNIQUE;",
    ]
    for node in graph["nodes"]:
        values = _node_values(node)
        props = ", ".join(f"e.{k} = {_literal(v)}" for k, v in values.items() if k != "workspace")
        lines.append(
            f"MERGE (e:Entity {{workspace: {_literal(node['workspace'])}, id: {node['id']}}}) SET {props};"
        )
    workspace = _literal(graph.get("workspace", ""))
    for edge in graph["edges"]:
        lines.append(
            f"MATCH (a:Entity {{workspace: {workspace}, id: {edge['source']}}}), "
            f"(b:Entity {{workspace: {workspace}, id: {edge['target']}}}) "
            f"MERGE (a)-[r:{_relation_type(edge['type'])}]->(b) "
            f"SET r.weight = {float(edge['weight'])}, r.assets = {_literal(edge['assets'])};"
        )
    return "\n".join(lines) + "\n"
