"""What the status bar says about the engines.

The engine pool does not exist yet; until it does the bar says so plainly
instead of pretending everything is green.
"""


def engine_summary() -> dict:
    return {"state": "none", "label": "no engines"}
