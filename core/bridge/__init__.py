"""The use cases adapters call: ask, regenerate, stop, imagine, models, system, reset, status.

`Bridge` is the application context: settings, the API client, the store, limits and the write
scheduler.
Each use case checks access and limits, does its work, and returns a typed result (core.results);
failures are results too, never exceptions escaping to a handler.

The in-flight rule: one answer at a time per user per chat. A second request while one is still
streaming is refused with a message saying so (not queued): the user sees at once why nothing
happens and can press Stop. The global concurrency cap, in contrast, queues fairly (first come,
first served) and shows the queue position in the answer's place.

Each subject is a module of its own, over one shared context (`base.BridgeBase`):
asking, stopping, recovery, images, preferences and status.
"""

from __future__ import annotations

from core.bridge.asking import Asking
from core.bridge.base import STALE_AFTER, BridgeBase, ModelKind
from core.bridge.images import Imagining
from core.bridge.preferences import Preferences
from core.bridge.status import Reporting
from core.bridge.stopping import Stopping

__all__ = ["STALE_AFTER", "Bridge", "BridgeBase", "ModelKind"]


class Bridge(Asking, Stopping, Imagining, Preferences, Reporting):
    """Everything the adapters need, behind typed use cases."""
