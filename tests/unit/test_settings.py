"""Settings: one source of truth, readable errors, the configuration doc in sync; the docs build."""

from __future__ import annotations

import re

import pytest

from settings import Settings, SettingsError, load_settings
from tests.support.helpers import ROOT


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("KNOWLEDGE_THREADS", "abc")
    with pytest.raises(SettingsError, match=r"KNOWLEDGE_THREADS: .*integer.*'abc'"):
        load_settings()


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_a_retired_setting_is_refused_with_what_replaced_it(monkeypatch, tmp_path, where):
    """A deployment that still sets WORKER_THREADS=25 must not run with a value that silently means nothing
    (the audited worker's 5-vs-25 threads)."""
    monkeypatch.chdir(tmp_path)
    if where == "environment":
        monkeypatch.setenv("WORKER_THREADS", "25")
    else:
        (tmp_path / ".env").write_text("worker_processes=4\n")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    replaced = {
        "environment": "WORKER_THREADS was replaced by ASSETS_THREADS, KNOWLEDGE_THREADS and CRM_THREADS",
        ".env": "WORKER_PROCESSES was replaced by ASSETS_PROCESSES, KNOWLEDGE_PROCESSES and CRM_PROCESSES",
    }
    assert replaced[where] in str(raised.value)


def test_bad_broker_scheme_is_refused(monkeypatch):
    monkeypatch.setenv("BROKER_URL", "kafka://x")
    with pytest.raises(SettingsError, match="BROKER_URL"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("knowledge", "'knowledge' is not QUEUE=URL"),
        ("knowledge.DQ=redis://r/0", "is not QUEUE=URL"),
        ("knowledge=http://r/0", "must be a redis://"),
        ("crm=redis://a/0;crm=redis://b/0", "named twice"),
    ],
)
def test_broker_shards_are_queue_equals_redis_url(monkeypatch, value, error):
    monkeypatch.setenv("BROKER_SHARDS", value)
    with pytest.raises(SettingsError, match="BROKER_SHARDS") as raised:
        load_settings()
    assert error in str(raised.value)
    monkeypatch.setenv("BROKER_SHARDS", " knowledge = redis://r-2:6379/0 ; crm=rediss://r-3/1 ;")
    assert load_settings().shard_urls == {"knowledge": "redis://r-2:6379/0", "crm": "rediss://r-3/1"}
    monkeypatch.setenv("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    monkeypatch.setenv("RATELIMIT_REDIS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(SettingsError, match="BROKER_SHARDS needs a Redis BROKER_URL"):
        load_settings()


def test_plain_http_upstream_only_on_loopback(monkeypatch):
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9999/api/v1")
    assert load_settings().openrouter_base_url.startswith("http://127.0.0.1")
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://example.com/api/v1")
    with pytest.raises(SettingsError, match="OPENROUTER_BASE_URL"):
        load_settings()


def test_secrets_are_masked(monkeypatch):
    monkeypatch.setenv("WEB_PASSWORD", "hunter2")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db/x")
    masked = load_settings().masked()
    assert masked["WEB_PASSWORD"] == "***"
    assert masked["DATABASE_URL"] == "postgresql://u:***@db/x"


def test_readme_configuration_table_matches_settings():
    section = (ROOT / "docs" / "configuration.rst").read_text()
    documented = re.findall(r"^   \* - ``([A-Z_]+)``\n     - (.+)$", section, re.M)
    names = [name for name, _ in documented]
    assert sorted(names) == sorted(f.upper() for f in Settings.model_fields)
    for name, default in documented:
        value = Settings.model_fields[name.lower()].default
        if value is None:
            assert default.startswith("(unset)"), name
        elif value == "":
            assert default.startswith("(empty)"), name
        else:
            shown = default.strip("`")
            if isinstance(value, bool):
                assert shown == str(value).lower(), name
            elif isinstance(value, float) and value.is_integer():
                assert float(shown) == value, name
            else:
                assert shown == str(value), name


@pytest.mark.parametrize("document", ["README.rst", *sorted(p.name for p in (ROOT / "docs").glob("*.rst"))])
def test_readme_and_docs_are_valid_restructuredtext(document):
    import io

    import docutils.core as docutils_core

    path = ROOT / document if document == "README.rst" else ROOT / "docs" / document
    errors = io.StringIO()
    docutils_core.publish_string(
        path.read_text(),
        writer="null",
        settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": errors},
    )
    assert errors.getvalue() == ""


def test_the_front_door_stays_short_and_points_at_docs_that_exist():
    import re

    readme = (ROOT / "README.rst").read_text()
    assert len(readme.splitlines()) < 200
    for path in re.findall(r"``(docs/[a-z_]+\.rst)``", readme):
        assert (ROOT / path).exists(), path


@pytest.mark.parametrize(
    "name, value",
    [
        ("BROKER_URL", "mysql://worker:s3cret-pw@10.0.0.5:3306/0"),
        ("BROKER_URL", "redis+sentinel://:s3cret-pw@sentinel-1/mymaster"),
        ("DATABASE_URL", "mysql://worker:s3cret-pw@db/worker"),
        ("BROKER_SHARDS", "knowledge=http://:s3cret-pw@r2:6379/0"),
        ("BROKER_SHARDS", "knowledge:redis://:s3cret-pw@r2:6379/0"),
    ],
)
def test_a_mistyped_url_setting_is_named_without_its_password(monkeypatch, name, value):
    """Regression (second probe): the error printed the mistyped URL whole, password included."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value) and "s3cret-pw" not in str(info.value)


def test_secret_values_are_the_secrets_and_the_passwords_inside_url_settings(monkeypatch):
    monkeypatch.setenv("BROKER_URL", "redis://:broker%2Fpw@127.0.0.1:6379/0")
    monkeypatch.setenv("KOMMO_ACCESS_TOKEN", "kommo-token-1")
    monkeypatch.setenv("BROKER_SHARDS", "crm=redis://:shard-pw-2@127.0.0.1:6380/0")
    values = load_settings().secret_values()
    assert {"broker/pw", "broker%2Fpw", "kommo-token-1", "shard-pw-2"} <= set(values)
