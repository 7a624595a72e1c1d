"""The worker service: everything but the actors, the middleware and the settings.

Organised by domain (``assets``, ``knowledge``, ``crm``) and concern (``brokers``, ``database``, ``web``,
``cli``, ``observability``, ``runtime``, and the reliability libraries beside them). Importing any module of
this package has no side effects: nothing connects, migrates, exits or changes ``os.environ`` until a
function is called. ``worker_service.runtime.bootstrap.bootstrap_worker`` is the one call that configures a
worker process (``actors/__init__`` makes it). docs/architecture.rst maps each behaviour to its file.
"""
