"""Subcommands: (not yet written)."""


def register(sub) -> None:
    return None
