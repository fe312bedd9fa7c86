"""The chat page: a websocket consumer that streams through the gateway's own admission and routing."""
