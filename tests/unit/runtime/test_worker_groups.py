"""worker_service.runtime.worker_groups: every queue has exactly one group, sizes come from settings, one metrics
directory each."""

from __future__ import annotations

import ast

from settings import Settings
from tests.support.helpers import ROOT
from worker_service.runtime.worker_groups import (
    GROUP_QUEUES,
    group_named,
    metrics_dir,
    usable_cpus,
    worker_groups,
)


def _actor_queues() -> set[str]:
    queues = set()
    for path in (ROOT / "actors").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "queue_name"
                and isinstance(node.value, ast.Constant)
            ):
                queues.add(node.value.value)  # actor(queue_name="assets", ...)
            elif isinstance(node, ast.Dict):  # _OPTIONS = {"queue_name": "crm", ...}
                queues.update(
                    v.value
                    for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and k.value == "queue_name" and isinstance(v, ast.Constant)
                )
    return queues


def test_every_actor_queue_is_consumed_by_exactly_one_group():
    grouped = [q for queues in GROUP_QUEUES.values() for q in queues]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == _actor_queues() == {"assets", "knowledge", "crm"}


def test_group_sizes_come_from_settings_and_assets_default_to_one_thread_per_usable_core():
    settings = Settings(knowledge_threads=40, crm_processes=3)
    sizes = {g.name: (g.queues, g.processes, g.threads, g.index) for g in worker_groups(settings)}
    assert sizes == {
        "assets": (("assets",), 1, usable_cpus(), 0),
        "knowledge": (("knowledge",), 1, 40, 1),
        "crm": (("crm",), 3, 16, 2),
    }
    assert group_named(Settings(assets_threads=3), "assets").threads == 3


def test_each_group_has_a_metrics_directory_of_its_own(tmp_path):
    assert metrics_dir(Settings(metrics_dir=str(tmp_path), worker_group="crm")) == tmp_path / "crm"
    assert metrics_dir(Settings(metrics_dir=str(tmp_path))) == tmp_path
