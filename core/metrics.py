"""What the bridge counts and times, in Prometheus form (served at /metrics, see core.http).

One `Metrics` per process (the API client makes it; the bridge shares it), holding its own
`CollectorRegistry` so tests never see each other's figures. Labels are only bounded, configured
values (a platform name, an outcome, an error kind, a token kind): never user text or ids.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.api_models import Usage
from core.errors import BridgeError, UpstreamError

if TYPE_CHECKING:
    from core.render.renderer import RenderResult

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]

log = logging.getLogger("core.answers")

PREFIX = "g4f_bridge_"
FIRST_TOKEN_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
FIRST_VISIBLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


class Gate(Protocol):
    """What the metrics read from the concurrency gate (core.limits.ConcurrencyGate)."""

    @property
    def waiting(self) -> int: ...

    @property
    def in_use(self) -> int: ...


def error_kind(exc: BridgeError) -> str:
    """A bounded label for an error: its class in snake case (`ModelProviderFailed` ->
    `model_provider_failed`), with the phase for timeouts (`upstream_timeout_idle`)."""
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower().lstrip("_")
    phase = getattr(exc, "phase", None)
    return f"{kind}_{phase}" if isinstance(phase, str) else kind


class Metrics:
    """The bridge's counters, gauges and histograms, and the events that move them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.answers = Counter(
            PREFIX + "answers", "Answers that ended, by platform and outcome.",
            ["platform", "outcome"], registry=r,
        )  # fmt: skip
        self.first_token = Histogram(
            PREFIX + "first_token_seconds",
            "From asking the API to its first token (retries and fallbacks included).",
            buckets=FIRST_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.first_visible = Histogram(
            PREFIX + "first_visible_seconds",
            "From the API's first token to the first write showing text, by platform.",
            ["platform"], buckets=FIRST_VISIBLE_BUCKETS, registry=r,
        )  # fmt: skip
        self.writes = Counter(
            PREFIX + "platform_writes", "Answer writes (sends and edits) made, by platform.",
            ["platform"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            PREFIX + "platform_rate_limited",
            "Rate limits (429) the platform answered writes with, by platform.",
            ["platform"], registry=r,
        )  # fmt: skip
        self.upstream_errors = Counter(
            PREFIX + "upstream_errors",
            "Failed API requests (each attempt) and broken streams, by kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            PREFIX + "tokens",
            "Tokens used: reported by the API (usage), or kind *_estimated when it sent none.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.streams_active = Gauge(
            PREFIX + "streams_active", "Answers streaming from the API now.", registry=r
        )
        self.queue_depth = Gauge(
            PREFIX + "queue_depth", "Requests waiting for a free slot (BRIDGE_MAX_CONCURRENCY).",
            registry=r,
        )  # fmt: skip
        self.slots_in_use = Gauge(
            PREFIX + "slots_in_use", "Requests to the API holding a slot now.", registry=r
        )

    # --- events -----------------------------------------------------------------------------
    def answer_finished(self, platform: str, result: RenderResult) -> None:
        """An answer ended on `platform` (called once per answer with its RenderResult); also
        logs one summary line for it (no text: outcome, writes, delay, error kind)."""
        self.answers.labels(platform, str(result.outcome)).inc()
        self.writes.labels(platform).inc(result.writes)
        self.rate_limited.labels(platform).inc(result.rate_limited)
        visible = ""
        if result.first_visible_at is not None and result.first_token_at is not None:
            delay = max(0.0, result.first_visible_at - result.first_token_at)
            self.first_visible.labels(platform).observe(delay)
            visible = f", text visible {delay:.2f} s after the first token"
        error = f" ({error_kind(result.error)})" if result.error is not None else ""
        log.info(
            "answer %s%s on %s: %d writes, %d rate limited%s",
            result.outcome, error, platform, result.writes, result.rate_limited, visible,
        )  # fmt: skip

    def first_token_after(self, seconds: float) -> None:
        self.first_token.observe(max(0.0, seconds))

    def upstream_failed(self, exc: UpstreamError) -> None:
        self.upstream_errors.labels(error_kind(exc)).inc()

    def tokens_used(self, usage: Usage) -> None:
        for kind, count in (
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ):
            if count:
                self.tokens.labels(kind).inc(count)

    def tokens_estimated(self, prompt: int, completion: int) -> None:
        """An answer whose server sent no usage: its estimate (about 4 characters a token),
        counted apart from what servers report."""
        for kind, count in (("prompt_estimated", prompt), ("completion_estimated", completion)):
            if count:
                self.tokens.labels(kind).inc(count)

    def watch_gate(self, gate: Gate) -> None:
        """Read the queue depth and the slots in use from the concurrency gate when scraped."""
        self.queue_depth.set_function(lambda: float(gate.waiting))
        self.slots_in_use.set_function(lambda: float(gate.in_use))

    # --- output -----------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format, for GET /metrics."""
        return generate_latest(self.registry)
