"""The `worker send` and `worker asset` commands and the worker-contracts sender, against real Redis and workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from worker_contracts import InvalidPayload, Sender

from tests.support.helpers import ROOT, run_cli, unavailable


def test_worker_contracts_installs_alone_in_a_fresh_virtualenv_and_its_message_is_processed(
    worker_env, start_worker, redis_client, tmp_path
):
    """What another service does: ``pip install`` the folder into its own environment, then send."""
    import json as json_

    from tests.support.helpers import wait_for

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT / "worker-contracts"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if installed.returncode != 0 and "No matching distribution" in installed.stderr + installed.stdout:
        unavailable(f"no package index reachable to install pydantic and redis: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    names = {p["name"].lower() for p in json_.loads(listed.stdout)}
    assert "worker-contracts" in names and {"pydantic", "redis"} <= names
    assert names & {"dramatiq", "peewee", "pdfplumber", "pypdfium2", "psycopg2-binary", "requests"} == set()
    (tmp_path / "storage" / "fresh.txt").write_text("sent by another service\n")
    start_worker(env=worker_env, threads=2)
    code = (
        "import sys; from worker_contracts import Sender; "
        "print(Sender(url=sys.argv[1]).process_asset('fresh', 'file:fresh.txt'))"
    )
    sent = subprocess.run(
        [str(python), "-c", code, worker_env["BROKER_URL"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(sent.stdout.strip()) == 36  # the message id
    wait_for(
        lambda: (
            (
                json_.loads(r.stdout).get("status")
                if (r := run_cli(worker_env, "asset", "fresh", "--json")).returncode == 0
                else None
            )
            == "extracted"
        ),
        60,
        0.3,
        "the message of the fresh venv processed",
    )


def test_sender_validates_before_enqueueing(redis_client: redis.Redis):
    sender = Sender(redis_client)
    with pytest.raises(InvalidPayload, match="source"):
        sender.send("process_asset", {"asset_id": "a1"})
    with pytest.raises(InvalidPayload, match="Extra inputs"):
        sender.send("extract_knowledge", {"asset_id": "a1", "surprise": 1})
    with pytest.raises(InvalidPayload, match="entity_id"):
        sender.crm_add_note("leads", "12", "hi", "k")  # type: ignore[arg-type]
    assert redis_client.llen("dramatiq:assets") == 0
    assert redis_client.llen("dramatiq:knowledge") == 0


def test_sender_writes_dramatiq_messages(redis_client: redis.Redis):
    from dramatiq.message import Message

    sender = Sender(redis_client)
    message_id = sender.process_asset("a1", "file:x.pdf", crm_lead_id=7)
    ids = sender.send_many("extract_knowledge", [{"asset_id": f"k{i}"} for i in range(5)])
    assert len(ids) == 5 and redis_client.llen("dramatiq:knowledge") == 5
    redis_id = redis_client.lindex("dramatiq:assets", 0)
    message = Message.decode(redis_client.hget("dramatiq:assets.msgs", redis_id))
    assert message.message_id == message_id
    assert message.actor_name == "process_asset" and message.queue_name == "assets"
    assert message.args == () and message.kwargs == {
        "asset_id": "a1",
        "source": "file:x.pdf",
        "crm_lead_id": 7,
    }


def test_worker_send_prints_only_the_message_id(worker_env, redis_client: redis.Redis):
    result = run_cli(worker_env, "send", "extract_knowledge", '{"asset_id": "a-1"}')
    assert result.returncode == 0, result.stderr
    message_id = result.stdout.strip()
    assert len(message_id) == 36 and "\n" not in message_id
    body = json.loads(
        redis_client.hget("dramatiq:knowledge.msgs", redis_client.lindex("dramatiq:knowledge", 0))
    )
    assert body["message_id"] == message_id


def test_worker_send_invalid_payload_exits_1_with_reason(worker_env, redis_client: redis.Redis):
    result = run_cli(worker_env, "send", "process_asset", '{"asset_id": "a-1", "source": "ftp://x"}')
    assert result.returncode == 1
    assert result.stdout == ""
    assert "source" in result.stderr and "Traceback" not in result.stderr
    assert redis_client.llen("dramatiq:assets") == 0


def test_worker_asset_unknown_exits_1_with_nothing_on_stdout(worker_env):
    result = run_cli(worker_env, "asset", "nope", "--json")
    assert result.returncode == 1 and result.stdout == ""


def test_cli_check_invalid_value_exits_1_without_traceback(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "CRM_THREADS": "abc"}
    result = run_cli(env, "check")
    assert result.returncode == 1
    assert "CRM_THREADS" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_check_unreachable_broker_exits_1_quickly(tmp_path: Path):
    import time

    env = {
        "PATH": "/usr/bin:/bin",
        "BROKER_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": f"sqlite:///{tmp_path}/w.db",
    }
    started = time.monotonic()
    result = run_cli(env, "check", timeout=20)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "PROBLEM broker redis://127.0.0.1:1/0 unreachable" in result.stdout
    assert result.stdout.splitlines()[0].startswith("1 problem(s)")  # the verdict first
    assert "BROKER_URL=" not in result.stdout  # the hundred settings only with --verbose
    assert "Traceback" not in result.stderr + result.stdout
    # issue 41: knowledge off is said, not left for an operator to discover from "skipped" records
    assert "WARN knowledge extraction is off: OPENROUTER_API_KEY is not set" in result.stdout


def test_send_lists_the_actors_with_examples_and_refuses_a_source_outside_storage(tmp_path: Path):
    """Issue 41: `worker send --help` names every actor and shows an example; a file: source that can never be
    read (absolute, or with ..) is refused before anything is sent."""
    from worker_contracts import CONTRACTS

    env = {
        "PATH": "/usr/bin:/bin",
        "BROKER_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": f"sqlite:///{tmp_path}/w.db",
    }
    shown = run_cli(env, "send", "--help").stdout
    assert all(actor in shown for actor in CONTRACTS) and "worker send process_asset '{" in shown
    for source in ("file:../secrets.pdf", "file:/etc/passwd", "file:a/../../b.pdf"):
        refused = run_cli(env, "send", "process_asset", json.dumps({"asset_id": "a", "source": source}))
        assert refused.returncode == 1 and "inside STORAGE_ROOT" in refused.stderr, source
        assert "cannot reach the broker" not in refused.stderr  # refused before any connection


def test_an_unreachable_broker_is_one_line_naming_its_url_masked(tmp_path: Path):
    env = {
        "PATH": "/usr/bin:/bin",
        "BROKER_URL": "redis://user:s3cret-pass@127.0.0.1:1/0",
        "DATABASE_URL": f"sqlite:///{tmp_path}/w.db",
    }
    result = run_cli(env, "send", "extract_knowledge", '{"asset_id": "a-1"}', timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("worker: cannot reach the broker at redis://user:***@127.0.0.1:1/0")
    assert "worker check" in lines[0] and "s3cret-pass" not in result.stderr


def test_every_command_and_option_has_help_and_the_main_ones_an_example():
    import argparse

    from worker_service.cli.main import make_parser

    def walk(parser: argparse.ArgumentParser, name: str) -> list[str]:
        missing = [
            f"{name} {a.dest}"
            for a in parser._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and not a.help
        ]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest for choice in action._choices_actions if choice.help}
                missing += [f"{name} {sub} (no help)" for sub in action.choices if sub not in helped]
                for sub, child in action.choices.items():
                    missing += walk(child, f"{name} {sub}")
        return missing

    parser = make_parser()
    assert walk(parser, "worker") == []
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command in ("send", "dlq", "check"):
        assert "example" in (commands[command].epilog or ""), command
