"""Commands for looking inside a trained model (score, inspect, report), registered by cli.py."""

from __future__ import annotations

COMMANDS: list = []
