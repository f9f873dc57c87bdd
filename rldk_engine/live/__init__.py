"""Live guardrails: run-directory protocol, rules and Guard, the monitor loop, presets.

The hot path: imports only the standard library, orjson, PyYAML and rldk_engine.ingest.
"""
