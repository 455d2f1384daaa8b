"""Servers workbench runs: `workbench serve` speaks Ollama's and OpenAI's HTTP APIs over our own
runtime actors, so any client of either talks to the in-process runtimes, plus control endpoints
(`workbench ps|logs|stop|restart`) and Prometheus `/metrics`."""
