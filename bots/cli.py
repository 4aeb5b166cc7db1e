"""The `g4f-bridge` command: one-shot ask/models/imagine/check, the terminal chat, and `run`.

Exit codes: 0 success, 1 an upstream error (one line on stderr), 2 a usage or settings error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TextIO

from bots.settings import PlatformSettings, load_platform_settings
from core.api_models import ChatMessage
from core.client import G4FClient
from core.errors import (
    BridgeError,
    ModelNotOffered,
    ModelProviderFailed,
    StoreOpenFailed,
    UpstreamError,
)
from core.logs import configure_logging
from core.settings import Settings, SettingsError, load_settings
from core.store.base import StoreError

EXIT_OK, EXIT_UPSTREAM, EXIT_USAGE = 0, 1, 2

ONE_SHOT = {"ask", "models", "imagine", "check"}
PLATFORM_LOGGERS = ("telegram.ext.Updater", "discord.gateway")  # chatty at INFO
Handler = Callable[[Settings, argparse.Namespace], Coroutine[None, None, int]]


def _fail(message: str, out: TextIO | None = None) -> None:
    print(f"g4f-bridge: {message}", file=out or sys.stderr, flush=True)


async def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    """Print one answer to stdout as it streams."""
    system = args.system if args.system is not None else settings.bridge_system_prompt
    messages = [ChatMessage(role="system", content=system)] if system else []
    messages.append(ChatMessage(role="user", content=args.prompt))
    async with G4FClient(settings) as client:
        if args.no_stream:
            result = await client.chat(messages, model=args.model)
            sys.stdout.write(result.text + "\n")
            return EXIT_OK
        stream = client.chat_stream(messages, model=args.model)
        wrote = False
        try:
            async for delta in stream:
                if delta.content:
                    sys.stdout.write(delta.content)
                    sys.stdout.flush()
                    wrote = True
        finally:
            if wrote:
                sys.stdout.write("\n")
                sys.stdout.flush()
    return EXIT_OK


async def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    """List the server's models: chat models, image models, and providers listed as models."""
    async with G4FClient(settings) as client:
        models = await client.list_models()
    if args.json:
        rows = [{"id": m.id, "provider": m.is_provider, "image": m.draws_images} for m in models]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for title, chosen in (
        ("Chat models", [m for m in models if not m.is_provider and not m.draws_images]),
        ("Image models", [m for m in models if m.draws_images]),
        ("Providers (usable as a model name)", [m for m in models if m.is_provider]),
    ):
        if chosen:
            print(f"{title}:")
            for m in chosen:
                mark = (
                    " (default)"
                    if m.id in (settings.g4f_default_model, settings.g4f_image_model)
                    else ""
                )
                print(f"  {m.id}{mark}")
    return EXIT_OK


async def cmd_imagine(settings: Settings, args: argparse.Namespace) -> int:
    """Draw an image, write it to a file and print the file's path."""
    async with G4FClient(settings) as client:
        image = await client.generate_image(args.prompt, model=args.model, size=args.size)
    out = Path(args.out) if args.out else Path(f"image-{_slug(args.prompt)}.{image.extension}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(image.data)
    print(out)
    return EXIT_OK


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """Check settings, the API (reachable, auth, models) and which platforms are configured."""
    problems = 0

    def report(ok: bool, text: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {text}", flush=True)

    report(True, "settings are valid")
    async with G4FClient(settings) as client:
        try:
            models = await client.list_models()
        except UpstreamError as exc:
            report(False, f"API at {settings.g4f_base_url}: {exc.user_message}")
            models = None
        if models is not None:
            auth = "with API key" if settings.g4f_api_key else "without API key"
            report(True, f"API at {settings.g4f_base_url} answers ({auth}), {len(models)} models")
            ids = {m.id for m in models}
            for label, model in (
                ("default chat model", settings.g4f_default_model),
                ("image model", settings.g4f_image_model),
            ):
                report(
                    model in ids,
                    f"{label} {model!r} "
                    + ("is offered" if model in ids else "is not in the server's model list"),
                )
            report(*await _check_completion(client, settings.g4f_default_model))
    sections: PlatformSettings = args.sections
    for platform, token in sections.tokens().items():
        state = "token is set" if token else "token not set (platform disabled)"
        print(f"info {platform.capitalize()}: {state}")
    return EXIT_OK if problems == 0 else EXIT_UPSTREAM


async def _check_completion(client: G4FClient, model: str) -> tuple[bool, str]:
    """One real one-token answer from `model`, and what its failure means for the user."""
    try:
        result = await client.probe(model=model)
    except ModelProviderFailed:
        return False, (
            f"the API answers, but its provider failed for {model!r}: the server is fine, the "
            "provider behind it is down or needs credentials. Try again later, or set "
            "G4F_DEFAULT_MODEL (or G4F_PROVIDER) to one that works"
        )
    except ModelNotOffered:
        return False, (
            f"the model {model!r} is unknown to the server: set G4F_DEFAULT_MODEL to one that "
            "`g4f-bridge models` lists"
        )
    except UpstreamError as exc:
        return False, f"a one-token answer from {model!r} failed: {exc.user_message}"
    via = f" via {result.provider}" if result.provider else ""
    return True, f"a one-token answer from {model!r} came back{via}"


async def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    """The interactive terminal chat."""
    from bots.terminal import chat
    from core.bridge import Bridge
    from core.embedded import EmbeddedG4F, start_embedded_g4f

    bridge = await Bridge.open(settings)
    embedded: EmbeddedG4F | None = None
    try:
        embedded = await start_embedded_g4f(settings)  # when nothing answers at a local URL
        return await chat(bridge)
    finally:
        if embedded is not None:
            await embedded.stop()
        await bridge.close()


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the configured platforms (the main job)."""
    from bots.run import RunError, run

    requested = args.platform.split(",") if args.platform else None
    try:
        return await run(settings, args.sections, requested)
    except RunError as exc:
        _fail(str(exc))
        return EXIT_USAGE


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower())[:40].strip("-")
    return "-".join(filter(None, slug.split("-"))) or "image"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="g4f-bridge",
        description="Bridge Discord and Telegram to a G4F or OpenAI-compatible API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = sub.add_parser("ask", help="print one answer as it streams")
    ask.add_argument("prompt")
    ask.add_argument("--model", help="model to use (default: G4F_DEFAULT_MODEL)")
    ask.add_argument("--system", help="system prompt (default: BRIDGE_SYSTEM_PROMPT)")
    ask.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    ask.set_defaults(handler=cmd_ask)

    models = sub.add_parser("models", help="list the server's models")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.set_defaults(handler=cmd_models)

    imagine = sub.add_parser("imagine", help="draw an image and save it")
    imagine.add_argument("prompt")
    imagine.add_argument("--model", help="image model (default: G4F_IMAGE_MODEL)")
    imagine.add_argument("--size", help="WxH, e.g. 1024x1024")
    imagine.add_argument("--out", help="file to write (default: image-<prompt>.<ext>)")
    imagine.set_defaults(handler=cmd_imagine)

    check = sub.add_parser("check", help="check settings, the API and platform tokens")
    check.set_defaults(handler=cmd_check)

    chat = sub.add_parser("chat", help="chat in the terminal (Ctrl-C stops an answer)")
    chat.set_defaults(handler=cmd_chat)

    run = sub.add_parser("run", help="serve Discord and Telegram (terminal chat when neither)")
    run.add_argument(
        "--platform",
        help="comma list of platforms to start (default: every one whose token is set)",
    )
    run.set_defaults(handler=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `g4f-bridge` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        sections = load_platform_settings(settings)  # the adapters' own settings
    except SettingsError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    args.sections = sections
    configure_logging(
        settings,
        quiet=args.command in ONE_SHOT,
        noisy=PLATFORM_LOGGERS,
        more_settings=sections.sections(),
    )
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(settings, args))
    except StoreOpenFailed as exc:  # the store BRIDGE_STORE_URL names cannot be opened
        _fail(exc.user_message)
        return EXIT_USAGE
    except BridgeError as exc:
        _fail(exc.user_message)
        return EXIT_UPSTREAM
    except StoreError as exc:  # the store BRIDGE_STORE_URL names cannot be opened
        _fail(f"BRIDGE_STORE_URL: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
