"""Context packages: the token-limited briefing each agent receives (not built yet)."""

__all__: list[str] = []
