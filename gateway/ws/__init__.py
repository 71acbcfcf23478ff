"""The /ws subscription channel: one WebSocket carrying many subscriptions to server-streaming RPCs, each
upstream stream shared by every subscriber in the process through bounded, latest-wins mailboxes."""

from .hub import Hub
from .routes import HUB, SESSIONS, setup_ws
from .topics import TOPICS, Topic

__all__ = ["HUB", "SESSIONS", "TOPICS", "Hub", "Topic", "setup_ws"]
