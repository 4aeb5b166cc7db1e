"""One exception hierarchy for everything that can go wrong upstream.

Each error carries `user_message`, a short sentence fit to show a chat user, and `detail`, what logs
needs (status, URL, server text). Neither ever contains an API key or token. Errors raised after
some text was streamed carry it in `partial_text`, so nothing the user already saw is lost.
"""

from __future__ import annotations

from typing import ClassVar

from core.echo import echo


class BridgeError(Exception):
    """Base of all g4f-bridge errors."""

    user_message: str = "Something went wrong."

    def __init__(
        self, user_message: str | None = None, *, detail: str = "", partial_text: str = ""
    ):
        if user_message is not None:
            self.user_message = user_message
        self.detail = detail
        self.partial_text = partial_text
        super().__init__(self.user_message)

    def __str__(self) -> str:
        return self.user_message if not self.detail else f"{self.user_message} ({self.detail})"


class InternalFault(BridgeError):
    """Something in the bridge itself failed (a bug, a store or limits backend that broke)."""

    user_message = "Something went wrong on my side, so this stopped here. Please try again."


class UpstreamError(BridgeError):
    """The G4F / OpenAI-compatible API failed."""

    retryable: bool = False


class CannotConnect(UpstreamError):
    """The API cannot be reached at all."""

    retryable = True

    def __init__(self, url: str, *, detail: str = "") -> None:
        super().__init__(
            f"Cannot reach the AI server at {url}. Start it (for example `g4f api`) or set "
            "G4F_BASE_URL to where it runs.",
            detail=detail,
        )
        self.url = url


class AuthFailed(UpstreamError):
    """The API refused our key (or wants one)."""

    def __init__(self, *, detail: str = "", provider_auth: bool = False) -> None:
        msg = (
            "The AI provider needs credentials the server does not have; pick another model."
            if provider_auth
            else "The AI server refused the API key. Check G4F_API_KEY (and G4F_API_KEY_HEADER)."
        )
        super().__init__(msg, detail=detail)


class ModelUnavailable(UpstreamError):
    """HTTP 500 for a model: g4f answers both an unknown model and a failing provider so.

    The client tells the two apart with the server's model list where it can, raising one of the
    subclasses below; this class itself means the list could not say.
    """

    retryable = True

    def __init__(self, model: str, *, detail: str = "") -> None:
        super().__init__(self.text_for(echo(model)), detail=detail)  # the name capped
        self.model = model

    @staticmethod
    def text_for(model: str) -> str:
        return (
            f"The AI server could not answer with {model!r}: its provider failed or it does not "
            "offer that model. Try again in a minute; if it keeps failing, pick another model "
            "(/models)."
        )


class ModelNotOffered(ModelUnavailable):
    """The server does not list the model (an unknown or mistyped name)."""

    retryable = False

    @staticmethod
    def text_for(model: str) -> str:
        return f"The AI server does not offer the model {model!r}. Pick one it has with /models."


class ModelProviderFailed(ModelUnavailable):
    """The server offers the model and is up, but the provider behind it failed."""

    @staticmethod
    def text_for(model: str) -> str:
        return (
            f"The AI server is up, but the provider behind {model!r} failed to answer (often "
            "for a while). Try again in a minute, or pick another model (/models): another "
            "model may use a working provider."
        )


class ProviderFailed(UpstreamError):
    """The provider failed, including the in-stream error event after text began."""

    retryable = True

    def __init__(self, message: str = "", *, detail: str = "", partial_text: str = "") -> None:
        super().__init__(
            message or "The AI provider failed while answering.",
            detail=detail,
            partial_text=partial_text,
        )


class ProviderNotFound(UpstreamError):
    """A pinned provider name the server does not know."""

    def __init__(self, provider: str, *, detail: str = "") -> None:
        super().__init__(
            f"The server does not know the provider {echo(provider)!r}. Check G4F_PROVIDER.",
            detail=detail,
        )


class RateLimited(UpstreamError):
    """The API (or its provider) asked us to slow down."""

    retryable = True

    def __init__(self, retry_after: float | None, *, detail: str = "") -> None:
        wait = f" Try again in {retry_after:.0f} s." if retry_after else " Try again shortly."
        super().__init__("The AI server is rate limiting requests." + wait, detail=detail)
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    """One of the configured timeouts ran out."""

    PHASES: ClassVar[dict[str, tuple[str, str]]] = {
        "connect": ("connecting to the AI server", "G4F_TIMEOUT_CONNECT"),
        "first_token": ("waiting for the first word of the answer", "G4F_TIMEOUT_FIRST_TOKEN"),
        "idle": ("waiting for the answer to continue", "G4F_TIMEOUT_IDLE"),
        "total": ("for the whole answer", "G4F_TIMEOUT_TOTAL"),
    }

    def __init__(self, phase: str, seconds: float, *, partial_text: str = "") -> None:
        what, setting = self.PHASES[phase]
        super().__init__(
            f"Timed out after {seconds:g} s {what} ({setting}).",
            detail=f"timeout phase={phase}",
            partial_text=partial_text,
        )
        self.phase = phase
        self.retryable = phase in ("connect", "first_token")


class RequestRejected(UpstreamError):
    """The API rejected the request as invalid (HTTP 422 or 400)."""

    def __init__(self, *, detail: str = "") -> None:
        super().__init__("The AI server rejected the request as invalid.", detail=detail)


class AnswerCutOff(UpstreamError):
    """The stream ended with neither [DONE] nor a finish reason: the answer is incomplete."""

    def __init__(self, *, detail: str = "", partial_text: str = "") -> None:
        super().__init__(
            "The answer was cut off before it finished.", detail=detail, partial_text=partial_text
        )


class BadResponse(UpstreamError):
    """The API answered something we cannot understand."""

    def __init__(self, *, detail: str = "") -> None:
        super().__init__("The AI server sent an answer that could not be read.", detail=detail)


class ImageFailed(UpstreamError):
    """The image could not be produced or fetched."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message, detail=detail)


class StoreUnavailable(BridgeError):
    """The conversation store cannot be used right now (locked, read-only, a disk error, its
    server out of reach).

    `detail` says what the database reported, for the log.
    """

    user_message = "I can't reach my conversation store right now; please try again in a minute."

    def __init__(self, *, detail: str = "") -> None:
        super().__init__(detail=detail)


class StoreBusy(StoreUnavailable):
    """Another writer held the database longer than the busy timeout ("database is locked")."""


class StoreReadOnly(StoreUnavailable):
    """The database, its directory or the filesystem refuses writes."""


class StoreDiskError(StoreUnavailable):
    """The disk failed under the database: an I/O error, a full disk, a damaged file."""


class StoreUnreachable(StoreUnavailable):
    """The database server cannot be reached: connection refused, dropped or shut down."""


class StoreOpenFailed(StoreUnavailable):
    """The store could not be opened at start; the message names BRIDGE_STORE_URL for the
    operator (it is raised only by `open`, before any chat user is served)."""

    def __init__(self, path: str, problem: str, *, detail: str = "") -> None:
        BridgeError.__init__(
            self,
            f"The conversation store {path} {problem}. Fix that, or set BRIDGE_STORE_URL to a "
            "writable place (for example sqlite:///data/bridge.sqlite3).",
            detail=detail,
        )
        self.path = path
