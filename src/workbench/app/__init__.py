"""The Textual app: side-by-side chat panes, live graphs, the concurrency slider, sessions, themes."""
