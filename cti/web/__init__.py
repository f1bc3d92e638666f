"""The web side: aiohttp routes (health, metrics; agent and supervisor
pages and the public callback API as they arrive)."""
