"""The ``worker`` command (console script ``worker = worker_service.cli.main:main``).

``main`` holds the parser and the error mapping; each command group is a module of its own: ``run``
(``worker run``), ``check`` (``check``, ``migrate``), ``web`` (``web``, ``users``), ``messages`` (``send``,
``asset``), ``crm``, ``dlq``; ``common`` is what they share.
"""
