"""Servers workbench runs: `workbench serve` speaks Ollama's HTTP API over our own runtime actors."""
