"""The single source of truth for every knob of the worker service.

Every setting is read from the environment (no prefix) or from a ``.env``
file in the working directory; the defaults below are the only defaults in
the code base.  ``load_settings()`` turns a bad value into a one-line
``SettingsError`` naming the variable and what it accepts, so that no
entry point ever shows a traceback for a configuration mistake.

Standard ``OTEL_*`` variables are read by the OpenTelemetry SDK itself and
are therefore not repeated here.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FIELDS = frozenset(
    {
        "web_password",
        "web_api_token",
        "openrouter_api_key",
        "kommo_access_token",
        "sentry_dsn",
        "kommo_client_secret",
        "kommo_webhook_token",
        "kommo_refresh_token",
        "web_session_secret",
        "events_webhook_secret",
        "redis_sentinel_password",
    }
)


class SettingsError(Exception):
    """A setting is missing or invalid; the message is meant for people."""


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """All settings.  Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- infrastructure ---------------------------------------------------
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://, rediss://, redis+sentinel://HOST:PORT"
        "[,HOST:PORT...]/MASTER[/DB] or amqp(s):// URL",
    )
    database_url: str = Field("sqlite:///var/worker.db", description="sqlite:///path or postgresql://...")
    storage_root: str = Field("var/storage", description="root of file: asset sources")
    database_statement_timeout_ms: int = Field(
        30_000, ge=0, description="PostgreSQL statement_timeout of every session (0: none)"
    )
    broker_socket_timeout_seconds: float = Field(10.0, gt=0, description="broker socket (read/write) timeout")
    broker_health_check_seconds: int = Field(
        15, ge=0, description="Redis connection health-check interval (0 = off)"
    )
    broker_idle_poll_ms: int = Field(
        50, ge=1, le=1000, description="longest sleep of an idle Redis delay-queue consumer between fetches"
    )
    broker_connect_attempts: int = Field(5, ge=1, description="connection attempts at start, with backoff")
    redis_sentinel_password: str | None = Field(
        None,
        description="the sentinels' own password (redis+sentinel:// URLs; the Redis nodes' is in the URL)",
    )
    redis_sentinel_timeout_seconds: float = Field(
        0.5,
        gt=0,
        description="socket timeout of each question to a sentinel (the next one is asked after it)",
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        description="enqueues, settles and retry copies wait until this many "
        "replicas have them (WAIT); 0: off (asynchronous)",
    )
    redis_wait_timeout_ms: int = Field(
        1000, ge=1, description="the longest such a wait; the write stands anyway (logged)"
    )
    broker_shards: str = Field(
        "",
        description="queues on a Redis of their own: QUEUE=URL[;QUEUE=URL...] (URLs as "
        "BROKER_URL's); the rest, and what is fleet-wide, stay on BROKER_URL",
    )
    rabbitmq_queue_type: Literal["quorum", "classic"] = Field(
        "quorum",
        description="RabbitMQ queues declared as quorum queues (replicated, a delivery limit: crash loops "
        "end) or classic (a vhost whose queues already exist as classic)",
    )
    rabbitmq_consumer_timeout_ms: int = Field(
        1_800_000,
        ge=1_000,
        description="the RabbitMQ server's "
        "consumer_timeout: delayed messages are parked before being held half "
        "of it",
    )

    # --- worker process ---------------------------------------------------
    worker_group: Literal["", "assets", "knowledge", "crm"] = Field(
        "",
        description="the group `worker run` runs (empty: every group, each in its own Dramatiq main process)",
    )
    assets_processes: int = Field(1, ge=1, le=64, description="assets group: worker processes")
    assets_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="assets group: threads per process, each with one "
        "extraction child (0: one per usable CPU core)",
    )
    knowledge_processes: int = Field(1, ge=1, le=64, description="knowledge group: worker processes")
    knowledge_threads: int = Field(
        64,
        ge=1,
        le=1024,
        description="knowledge group: threads per process (LLM calls "
        "in flight: OPENROUTER_RPS x seconds per call)",
    )
    crm_processes: int = Field(1, ge=1, le=64, description="crm group: worker processes")
    crm_threads: int = Field(
        16, ge=1, le=1024, description="crm group: threads per process (Kommo calls in flight)"
    )
    shutdown_grace_seconds: int = Field(60, ge=1, description="SIGTERM: time in-flight work gets to finish")
    heartbeat_timeout_ms: int = Field(60_000, ge=1_000, description="a worker silent this long is dead")
    maintenance_interval_ms: int = Field(5_000, ge=100, description="heartbeat + dead-worker recovery period")
    worker_max_rss_mb: int = Field(
        1024, ge=0, description="worker processes over this RSS are recycled (0: off)"
    )
    worker_max_messages: int = Field(
        0, ge=0, description="recycle worker processes after N messages (0: off)"
    )
    crash_loop_limit: int = Field(
        3, ge=1, description="worker deaths while running a message before crash_loop"
    )
    liveness_wedge_grace_seconds: float = Field(
        120.0,
        gt=0,
        description="a message running this long past its "
        "time limit makes /healthz fail (the process is wedged)",
    )
    reconcile_interval_seconds: float = Field(
        60.0, gt=0, description="how often the reconciler looks for stuck records"
    )
    reconcile_grace_seconds: float = Field(
        300.0,
        gt=0,
        description="a record under way whose lease expired this long ago, "
        "with no message for it, is repaired",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="address of the worker's /metrics, /healthz, /readyz port "
        "(0.0.0.0 in a pod, for the kubelet and Prometheus)",
    )
    metrics_port: int = Field(
        9191,
        ge=0,
        le=65535,
        description="worker /metrics, /healthz, /readyz port (0: off); "
        "`worker run` of every group gives group i METRICS_PORT+i",
    )
    metrics_dir: str = Field(
        "var/metrics",
        description="prometheus-client multiprocess directory; each group uses "
        "its own subdirectory, emptied when the group starts",
    )

    # --- retries and budgets (per domain) ----------------------------------
    retry_backoff_base_ms: int = Field(5_000, ge=1, description="first retry waits base..2*base")
    retry_backoff_max_ms: int = Field(
        15 * 60_000, ge=1, description="cap on one retry delay (< RabbitMQ consumer_timeout)"
    )
    assets_max_attempts: int = Field(5, ge=1, description="process_asset attempts before dead letter")
    assets_retry_hours: float = Field(2.0, gt=0, description="process_asset total retry window")
    knowledge_max_attempts: int = Field(8, ge=1, description="extract_knowledge attempts")
    knowledge_retry_hours: float = Field(6.0, gt=0, description="extract_knowledge total retry window")
    crm_max_attempts: int = Field(10, ge=1, description="crm_* attempts")
    crm_retry_hours: float = Field(12.0, gt=0, description="crm_* total retry window")
    message_max_age_hours: float = Field(
        72.0, gt=0, description="a message not started within this is dead (age_limit)"
    )

    # --- time limits -------------------------------------------------------
    assets_time_limit_seconds: int = Field(300, ge=1, description="soft time limit of process_asset")
    knowledge_time_limit_seconds: int = Field(900, ge=1, description="soft time limit of extract_knowledge")
    crm_time_limit_seconds: int = Field(120, ge=1, description="soft time limit of crm_* actors")
    extract_timeout_seconds: int = Field(60, ge=1, description="hard limit of one extraction child")
    extract_memory_mb: int = Field(1024, ge=64, description="address-space cap of one extraction child")
    ocr_timeout_seconds: int = Field(
        240,
        ge=1,
        description="hard limit of one extraction child that may OCR "
        "(PDFs and images); keep it under ASSETS_TIME_LIMIT_SECONDS",
    )
    ocr_page_timeout_seconds: int = Field(60, ge=1, description="OCR of one page is stopped after this")
    hard_timeout_retries: int = Field(
        1, ge=0, description="retries after a hard timeout before it is permanent"
    )

    # --- assets --------------------------------------------------------------
    max_upload_mb: int = Field(50, ge=1, description="largest accepted source file")
    max_pdf_pages: int = Field(2_000, ge=1, description="PDFs with more pages fail too_many_pages")
    pdf_tables: bool = Field(False, description="also extract tables with pdfplumber (slow)")
    docx_max_entries: int = Field(1_000, ge=1, description="zip entries allowed in an Office/ODF package")
    docx_max_uncompressed_mb: int = Field(
        100, ge=1, description="declared uncompressed size allowed in an Office/ODF package"
    )
    docx_max_ratio: int = Field(
        100, ge=1, description="compression ratio allowed per Office/ODF package entry"
    )
    ocr_languages: str = Field(
        "rus+eng",
        pattern=r"^[a-z_]{3,}(\+[a-z_]{3,})*$",
        description="Tesseract languages for scans and photos (their -tessdata packages)",
    )
    max_image_pixels: int = Field(
        100_000_000,
        ge=1,
        description="images (and scans) with more pixels fail too_large before they are decoded",
    )
    spreadsheet_max_cells: int = Field(
        500_000,
        ge=1,
        description="cells extracted from a spreadsheet; the rest is left out and the text says so",
    )
    fetch_connect_timeout_seconds: float = Field(5.0, gt=0, description="https fetch connect timeout")
    fetch_read_timeout_seconds: float = Field(30.0, gt=0, description="https fetch read timeout")
    fetch_deadline_seconds: float = Field(
        120.0,
        gt=0,
        description="a whole https download, redirects included; past it the asset fails fetch_failed",
    )
    fetch_allow_http: bool = Field(False, description="accept plain http:// sources")
    fetch_allowlist: str = Field("", description="comma-separated hosts/CIDRs exempt from the SSRF guard")

    # --- upstreams -----------------------------------------------------------
    openrouter_api_key: str | None = Field(None, description="OpenRouter key; unset -> knowledge skipped")
    openrouter_base_url: str = Field("https://openrouter.ai/api/v1", description="including /api/v1")
    openrouter_model: str = Field("openai/gpt-4o-mini", description="model id")
    openrouter_rps: float = Field(2.0, gt=0, description="fleet-wide OpenRouter requests per second")
    openrouter_burst: int = Field(
        1,
        ge=1,
        description="OpenRouter burst size (each request over 1 lets one more "
        "than OPENROUTER_RPS into a second)",
    )
    openrouter_timeout_seconds: float = Field(120.0, gt=0, description="OpenRouter read timeout")
    openrouter_payment_pause_seconds: int = Field(
        600, ge=1, description="fleet pause after a 402 (no credits)"
    )
    knowledge_chunk_chars: int = Field(6000, ge=500, description="characters per LLM chunk")
    knowledge_chunk_overlap: int = Field(300, ge=0, description="characters shared by neighbouring chunks")
    knowledge_max_chunks: int = Field(
        200, ge=1, description="an asset with more chunks fails budget_exceeded before any call"
    )
    knowledge_max_cost_usd: float = Field(
        1.0,
        gt=0,
        description="LLM spend per asset (one knowledge generation); "
        "checked before each call: at most one call goes over",
    )
    openrouter_daily_budget_usd: float | None = Field(
        None,
        gt=0,
        description="fleet-wide OpenRouter spend per UTC "
        "day; reaching it pauses OpenRouter until midnight UTC "
        "(unset: no cap)",
    )
    knowledge_cache_days: float = Field(
        30.0, gt=0, description="chunk results (checkpoints and cache by content) are kept this long"
    )
    app_url: str = Field("https://example.invalid/worker", description="HTTP-Referer sent to OpenRouter")
    app_title: str = Field("Worker service", description="X-OpenRouter-Title sent to OpenRouter")
    kommo_base_url: str | None = Field(None, description="https://{subdomain}.kommo.com, without /api/v4")
    kommo_access_token: str | None = Field(None, description="long-lived Kommo token")
    kommo_client_id: str | None = Field(
        None, description="OAuth2 integration id (instead of a long-lived token)"
    )
    kommo_client_secret: str | None = Field(None, description="OAuth2 integration secret")
    kommo_redirect_uri: str | None = Field(
        None, description="OAuth2 redirect URI registered with the integration"
    )
    kommo_refresh_token: str | None = Field(
        None, description="first OAuth2 refresh token (then kept in the database)"
    )
    kommo_webhook_token: str | None = Field(None, description="secret in the Kommo webhook URL (?token=)")
    kommo_block_pause_seconds: int = Field(120, ge=1, description="fleet pause after Kommo's 403 block")
    kommo_auth_pause_seconds: int = Field(
        60,
        ge=1,
        description="fleet pause after Kommo rejected the credentials "
        "(401 not cured by a refresh); then the next message tries again",
    )
    crm_events_retention_days: float = Field(
        90.0,
        gt=0,
        description="Kommo webhook events older than this are purged (hourly, and by `worker crm purge`)",
    )
    kommo_rps: float = Field(7.0, gt=0, description="fleet-wide Kommo requests per second")
    kommo_burst: int = Field(1, ge=1, description="Kommo burst size")
    ratelimit_safety_factor: float = Field(
        0.95, gt=0.5, le=1.0, description="share of an upstream's published rate the fleet aims for"
    )
    ratelimit_redis_url: str | None = Field(
        None, description="Redis for rate limits (default: BROKER_URL when Redis)"
    )
    upstream_allow_http: bool = Field(False, description="accept http:// upstreams that are not loopback")

    # --- outcome events (other services learn what happened) -------------------------
    events_webhook_url: str | None = Field(
        None, description="POST every terminal asset/knowledge status here (unset: no events are recorded)"
    )
    events_webhook_secret: str | None = Field(
        None, description="HMAC-SHA256 key of X-Worker-Signature (required with EVENTS_WEBHOOK_URL)"
    )
    events_retention_days: float = Field(30.0, gt=0, description="delivered events are kept this long")

    # --- observability -----------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="log level"
    )
    log_format: Literal["json", "text"] = Field("json", description="json lines or text for people")
    sentry_dsn: str | None = Field(None, description="Sentry DSN; unset -> Sentry off")

    # --- web dashboard -------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="dashboard bind address")
    web_port: int = Field(8080, ge=1, le=65535, description="dashboard port")
    web_password: str | None = Field(None, description="dashboard login password (at least 12 characters)")
    web_api_token: str | None = Field(None, description="bearer token for /api")
    web_user: str = Field("admin", description="dashboard login name (shown in the audit log)")
    web_session_secret: str | None = Field(
        None,
        description="key signing session cookies and CSRF tokens, 32+ characters (default: a random "
        "key generated once and kept in Redis; `worker sessions rotate`)",
    )
    web_session_hours: float = Field(12.0, gt=0, description="dashboard session lifetime")
    web_threads: int = Field(8, ge=1, le=64, description="dashboard server threads")
    web_connection_limit: int = Field(
        1000, ge=10, le=100_000, description="dashboard connections open at once (idle keep-alives included)"
    )
    web_channel_timeout_seconds: int = Field(
        30, ge=1, description="an idle dashboard connection is closed after this"
    )
    web_request_timeout_seconds: int = Field(
        20,
        ge=1,
        description="a whole request (headers and body) must arrive within this, or its connection is closed",
    )
    web_login_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="password checks (Argon2, up to 64 MiB each) "
        "running at once; more logins answer 503 at once",
    )
    web_proxy_user_header: str | None = Field(
        None, description="trust this header's user name (e.g. X-Forwarded-User of oauth2-proxy); unset: off"
    )
    web_proxy_addresses: str = Field(
        "",
        description="comma-separated peer addresses (reverse proxies) whose WEB_PROXY_USER_HEADER, "
        "X-Forwarded-For, -Proto and -Host are believed (unset: nobody's)",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in {"redis", "rediss", "redis+sentinel", "rediss+sentinel", "amqp", "amqps"}:
            raise ValueError("must start with redis://, rediss://, redis+sentinel://, amqp:// or amqps://")
        if "sentinel" in scheme:
            from worker_contracts.redis_urls import parse_sentinel_url

            parse_sentinel_url(value)  # a ValueError names what is wrong
        return value

    @field_validator("broker_shards")
    @classmethod
    def _shards_are_queue_equals_redis_url(cls, value: str) -> str:
        for queue, url in parse_shards(value).items():
            if urlsplit(url).scheme not in {"redis", "rediss", "redis+sentinel", "rediss+sentinel"}:
                raise ValueError(
                    f"the Redis of queue {queue!r} must be a redis://, rediss:// or redis+sentinel:// URL"
                )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in {"sqlite", "postgres", "postgresql"}:
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> Settings:
        for name in ("openrouter_base_url", "kommo_base_url"):
            url = getattr(self, name)
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"}:
                raise ValueError(f"{name.upper()} must be an https:// URL")
            if parts.scheme == "http" and not (is_loopback_host(parts.hostname) or self.upstream_allow_http):
                raise ValueError(
                    f"{name.upper()} uses plain http to a non-loopback host; "
                    "use https or set UPSTREAM_ALLOW_HTTP=true"
                )
        return self

    @model_validator(mode="after")
    def _events_are_signed(self) -> Settings:
        if self.events_webhook_url:
            if urlsplit(self.events_webhook_url).scheme not in {"http", "https"}:
                raise ValueError("EVENTS_WEBHOOK_URL must be an http:// or https:// URL")
            if not self.events_webhook_secret:
                raise ValueError(
                    "EVENTS_WEBHOOK_SECRET is required with EVENTS_WEBHOOK_URL (receivers verify it)"
                )
        return self

    @model_validator(mode="after")
    def _rate_limits_need_redis(self) -> Settings:
        if self.broker_kind == "rabbitmq" and not self.ratelimit_redis_url:
            raise ValueError(
                "RATELIMIT_REDIS_URL is required with a RabbitMQ broker (rate limits live in Redis)"
            )
        return self

    @model_validator(mode="after")
    def _shards_need_a_redis_broker(self) -> Settings:
        if self.broker_shards and self.broker_kind == "rabbitmq":
            raise ValueError(
                "BROKER_SHARDS needs a Redis BROKER_URL (a RabbitMQ cluster spreads queues itself)"
            )
        return self

    @property
    def shard_urls(self) -> dict[str, str]:
        """BROKER_SHARDS: queue -> the URL of the Redis that holds it (queues not named are on BROKER_URL)."""
        return parse_shards(self.broker_shards)

    @property
    def ratelimit_url(self) -> str:
        return self.ratelimit_redis_url or self.broker_url

    # --- derived values --------------------------------------------------------
    @property
    def broker_kind(self) -> Literal["redis", "rabbitmq"]:
        return "rabbitmq" if urlsplit(self.broker_url).scheme.startswith("amqp") else "redis"

    def secret_values(self) -> tuple[str, ...]:
        """The configured secrets (SECRET_FIELDS) and the passwords inside URL settings: what no log line, page
        or error may show (worker_service.masking).  Values under 4 characters are left out: masking them
        everywhere would mangle ordinary text."""
        values = [str(getattr(self, name)) for name in SECRET_FIELDS if getattr(self, name, None)]
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, str) and "@" in value:
                for url in value.replace(",", ";").split(";"):
                    password = urlsplit(url.partition("=")[2] if name == "broker_shards" else url).password
                    if password:
                        values.append(unquote(password))
                        values.append(password)
        return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))

    def masked(self) -> dict[str, object]:
        """Every setting, with secrets and URL passwords masked (for `worker check` and logs)."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_FIELDS and value:
                value = "***"
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            out[name.upper()] = value
        return out


def parse_shards(value: str) -> dict[str, str]:
    """``QUEUE=URL;QUEUE=URL`` -> {queue: url}; a ValueError names an entry that is not one."""
    shards: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in value.split(";"))):
        queue, sep, url = (part.strip() for part in entry.partition("="))
        if not sep or not queue or not url or queue.endswith(".DQ"):
            raise ValueError(f"{entry!r} is not QUEUE=URL")
        if queue in shards:
            raise ValueError(f"queue {queue!r} is named twice")
        shards[queue] = url
    return shards


def mask_url(url: str) -> str:
    """``url`` with its credentials masked (worker_service.masking's rule, which every page applies)."""
    from worker_service.masking import mask_url_credentials

    return mask_url_credentials(url)


def _describe(error: Any) -> str:
    name = ".".join(str(p) for p in error.get("loc", ())).upper() or "settings"
    message = error.get("msg", "invalid")
    message = message.removeprefix("Value error, ")
    if error.get("type") == "missing":
        return f"{name} is required"
    value = error.get("input")
    secret = name.lower() in SECRET_FIELDS
    shown = f" (got {value!r})" if isinstance(value, str | int | float) and not secret else ""
    return _without_credentials(f"{name}: {message}{shown}")


_USERINFO = re.compile(r"(?<=[/=;,\s'(])[^/@\s;,'()]+@")


def _without_credentials(text: str) -> str:
    """A settings error as it may be printed: the masking rule, and any ``userinfo@`` of a URL too mistyped to
    parse (``redis:/user:pw@host``, ``queue=:pw@host``) masked whole."""
    from worker_service.masking import mask_text

    return _USERINFO.sub("***@", mask_text(text))


#: settings that no longer exist, and what replaced them: refused, so that no deployment keeps a value that
#: silently stopped meaning anything (the audited worker ran 5 threads while its config said 25)
RETIRED = {
    "WORKER_PROCESSES": "ASSETS_PROCESSES, KNOWLEDGE_PROCESSES and CRM_PROCESSES",
    "WORKER_THREADS": "ASSETS_THREADS, KNOWLEDGE_THREADS and CRM_THREADS",
}


def _retired_in_use() -> list[str]:
    from dotenv import dotenv_values

    dotenv = {k.upper() for k in dotenv_values(".env")} if os.path.exists(".env") else set()
    present = {k.upper() for k in os.environ} | dotenv
    return [f"{name} was replaced by {RETIRED[name]}" for name in sorted(RETIRED) if name in present]


def load_settings() -> Settings:
    """Read the settings, raising SettingsError with one readable line per problem."""
    problems = _retired_in_use()
    try:
        settings = Settings()
    except ValidationError as exc:
        problems += [_describe(e) for e in exc.errors()]
    if problems:
        raise SettingsError("invalid configuration: " + "; ".join(problems))
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call ``get_settings.cache_clear()``)."""
    return load_settings()
