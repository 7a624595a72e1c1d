"""The worker's entry point for Dramatiq: ``dramatiq actors`` (or ``worker run``).

The composition root: one bootstrap call (settings, logging, database, the broker with the full middleware
stack; see ``worker_service.runtime.bootstrap``), then the domains' actors. Dramatiq checks actor options
when an actor is declared, so the custom middleware must be installed first.
"""

from __future__ import annotations

from worker_service.runtime.bootstrap import bootstrap_worker

broker = bootstrap_worker()

from actors import assets, crm, knowledge  # noqa: E402,F401 - declared after the broker on purpose

__all__ = ["broker"]
