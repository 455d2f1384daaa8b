"""Screens pushed over the main one: actor status, the picker, sessions, playback and re-run."""
