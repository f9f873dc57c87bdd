"""rldk engine: ingest, rules, forensics, determinism. No Textual import here."""

__version__ = "0.1.0"
