"""peewee models of the knowledge graph: one graph per workspace, derived from mentions (worker_service.knowledge).

A *mention* is what one chunk's extraction said about one thing: its surface form, type, description, the
page it occurs on. Mentions that agree on everything a name can say (``worker_service.knowledge.names``:
the profile) share an *alias*; aliases are clustered into *entities* by resolution. Relation mentions join
two aliases, never two display names. Everything an entity shows (aliases, identifiers, asset and mention
counts) is derived from its mentions, so deleting an asset's mentions deletes exactly its contribution.
"""

from __future__ import annotations

import peewee

from worker_service.database.models import Asset, BaseModel, JSONField, utcnow


class KgEntity(BaseModel):
    """One real thing in a workspace's graph: a cluster of aliases (its name and type are derived from them)."""

    workspace = peewee.CharField(max_length=200, index=True)
    name = peewee.TextField()
    type = peewee.CharField()
    updated_at = peewee.DateTimeField(default=utcnow)


class KgAlias(BaseModel):
    """A distinct profile of a workspace (a name with its kind, legal form and identifiers) and its entity."""

    workspace = peewee.CharField(max_length=200)
    profile_key = peewee.TextField()
    profile = peewee.TextField()  # Profile.to_json()
    entity = peewee.ForeignKeyField(KgEntity, null=True, on_delete="SET NULL", index=True)

    class Meta:
        indexes = ((("workspace", "profile_key"), True),)


class KgAliasKey(BaseModel):
    """A blocking key of an alias (Profile.keys): a new mention is compared with the aliases sharing one."""

    alias = peewee.ForeignKeyField(KgAlias, on_delete="CASCADE", index=True)
    workspace = peewee.CharField(max_length=200)
    key = peewee.TextField()

    class Meta:
        table_name = "kg_alias_key"
        indexes = ((("workspace", "key"), False),)


class KgMention(BaseModel):
    """What one chunk of one asset said about one thing, with the page where its surface form occurs."""

    asset = peewee.ForeignKeyField(Asset, on_delete="CASCADE", column_name="asset_id", index=True)
    alias = peewee.ForeignKeyField(KgAlias, on_delete="CASCADE", index=True)
    workspace = peewee.CharField(max_length=200)
    chunk = peewee.IntegerField()
    surface = peewee.TextField()
    folded = (
        peewee.TextField()
    )  # the surface lower-cased, ё as е: what a search compares (SQLite folds ASCII only)
    type = peewee.CharField()  # the model's label, canonical (ORGANIZATION for COMPANY); "" when unknown
    description = peewee.TextField(default="")
    page = peewee.IntegerField(null=True)  # 1-based page, sheet or slide; None for unpaged text


class KgRelation(BaseModel):
    """A relation one chunk of one asset stated between two aliases."""

    asset = peewee.ForeignKeyField(Asset, on_delete="CASCADE", column_name="asset_id", index=True)
    workspace = peewee.CharField(max_length=200)
    chunk = peewee.IntegerField()
    source = peewee.ForeignKeyField(KgAlias, on_delete="CASCADE", index=True, related_name="relations_out")
    target = peewee.ForeignKeyField(KgAlias, on_delete="CASCADE", index=True, related_name="relations_in")
    type = peewee.CharField()
    description = peewee.TextField(default="")
    weight = peewee.FloatField(default=1.0)
    page = peewee.IntegerField(null=True)


class KgDecision(BaseModel):
    """An operator's curation, kept by profile keys so it survives rebuilds, deletions and later uploads:
    ``merge`` (``keys``: profiles that are one thing) or ``split`` (``keys`` apart from ``others``)."""

    workspace = peewee.CharField(max_length=200, index=True)
    kind = peewee.CharField()
    keys = JSONField()
    others = JSONField(default="[]")
    decided_by = peewee.CharField()
    decided_at = peewee.DateTimeField(default=utcnow)


GRAPH_MODELS: tuple[type[BaseModel], ...] = (KgEntity, KgAlias, KgAliasKey, KgMention, KgRelation, KgDecision)
