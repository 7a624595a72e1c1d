"""Logs, traces, Prometheus metrics and the health checks shared by the worker, the CLI and the dashboard."""
