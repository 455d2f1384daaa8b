"""workbench: chat with, monitor and compare LLM runtimes side by side."""

__version__ = "0.1.0"
