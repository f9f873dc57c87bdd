"""Ingest: the metric alias table, the streaming line parser, Run columns, rank merge, readers."""
