"""The G4F client against the emulated G4F server, every failure mode included."""

from __future__ import annotations

import base64
import socket

import pytest
from aiohttp import web

from core.api_models import ChatMessage, StreamDelta
from core.client import G4FClient
from core.errors import (
    AnswerCutOff,
    AuthFailed,
    CannotConnect,
    ImageFailed,
    ModelNotOffered,
    ModelProviderFailed,
    ModelUnavailable,
    ProviderFailed,
    ProviderNotFound,
    RateLimited,
    RequestRejected,
    UpstreamTimeout,
)
from tests.conftest import MakeSettings
from tests.fakes.clock import InstantClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.served import serve_app

HELLO = [ChatMessage(role="user", content="hello there")]


async def collect(client: G4FClient, model: str, **kw: object) -> tuple[list[StreamDelta], str]:
    stream = client.chat_stream(HELLO, model=model, **kw)  # type: ignore[arg-type]
    deltas = [d async for d in stream]
    return deltas, "".join(d.content for d in deltas)


async def test_stream_gives_back_the_exact_answer(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    g4f.answers["hello there"] = "Hi! Here is\n\nsome *text* with  spaces."
    async with G4FClient(make_settings()) as client:
        deltas, text = await collect(client, "gpt-4o")
    assert text == "Hi! Here is\n\nsome *text* with  spaces."
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None and deltas[-1].usage.total_tokens
    assert len(deltas) > 3
    body = g4f.chat_requests()[-1].json
    assert body is not None
    assert body["stream"] is True and body["model"] == "gpt-4o"
    assert body["messages"] == [{"role": "user", "content": "hello there"}]


async def test_reasoning_is_kept_apart_from_the_answer(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    g4f.answers["hello there"] = "The answer."
    async with G4FClient(make_settings()) as client:
        deltas, text = await collect(client, "reasoner")
    assert text == "The answer."
    reasoning = "".join(d.reasoning for d in deltas)
    assert "think" in reasoning.lower()
    assert all(not (d.content and d.reasoning) for d in deltas)


async def test_whole_answer_without_streaming(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    g4f.answers["hello there"] = "All at once."
    async with G4FClient(make_settings()) as client:
        result = await client.chat(HELLO, model="gpt-4o")
    assert result.text == "All at once."
    assert result.provider == "FakeProvider"
    assert result.model == "gpt-4o"
    assert g4f.chat_requests()[-1].json["stream"] is False


async def test_in_stream_error_keeps_partial_text(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    g4f.answers["hello there"] = "one two three four five six seven eight"
    seen: list[str] = []
    async with G4FClient(make_settings()) as client:
        with pytest.raises(ProviderFailed) as caught:
            async for delta in client.chat_stream(HELLO, model="midstream-error"):
                seen.append(delta.content)
    assert caught.value.partial_text == "".join(seen)
    assert caught.value.partial_text.startswith("one two")
    assert "seven eight" not in caught.value.partial_text
    assert caught.value.user_message == "The AI provider failed while answering."
    assert "Request execution failed" in caught.value.detail


@pytest.mark.parametrize("model", ["drop", "cutoff"])
async def test_stream_that_stops_early_is_cut_off_not_success(
    g4f: FakeG4F, make_settings: MakeSettings, model: str
) -> None:
    g4f.answers["hello there"] = "one two three four five six seven eight"
    async with G4FClient(make_settings()) as client:
        with pytest.raises(AnswerCutOff) as caught:
            await collect(client, model)
    assert caught.value.partial_text.startswith("one two")
    assert caught.value.user_message == "The answer was cut off before it finished."


async def test_unknown_model_is_not_offered_and_not_retried(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    async with G4FClient(make_settings(g4f_retries=2), clock=InstantClock()) as client:
        with pytest.raises(ModelNotOffered) as caught:
            await collect(client, "no-such-model")
    assert caught.value.user_message == (
        "The AI server does not offer the model 'no-such-model'. Pick one it has with /models."
    )
    assert len(g4f.chat_requests()) == 1


async def test_500_for_an_offered_model_is_its_provider_failing(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    g4f.down_models.add("gpt-4o")
    clock = InstantClock()
    async with G4FClient(make_settings(g4f_retries=1), clock=clock) as client:
        with pytest.raises(ModelProviderFailed) as caught:
            await client.chat(HELLO, model="gpt-4o")
        with pytest.raises(ModelProviderFailed):
            await collect(client, "fail-500")
    message = caught.value.user_message
    assert message.startswith("The AI server is up, but the provider behind 'gpt-4o' failed")
    assert "Try again in a minute, or pick another model (/models)" in message
    assert g4f.calls_by_model["gpt-4o"] == 2  # retried: providers come back
    assert len([r for r in g4f.requests if r.path == "/v1/models"]) == 1  # the list is cached


async def test_500_without_a_model_list_says_both_causes(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    g4f.disabled_paths.add("/v1/models")
    async with G4FClient(make_settings()) as client:
        with pytest.raises(ModelUnavailable) as caught:
            await client.chat(HELLO, model="fail-500")
    assert type(caught.value) is ModelUnavailable
    assert "its provider failed or it does not offer that model" in caught.value.user_message


async def test_probe_is_one_single_token_attempt(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    g4f.answers["Reply with the single word OK."] = "OK, happy to help"
    settings = make_settings(g4f_retries=2, g4f_fallback_models="gpt-4o-mini")
    async with G4FClient(settings, clock=InstantClock()) as client:
        result = await client.probe()
        assert (result.text, result.model, result.provider) == ("OK,", "gpt-4o", "FakeProvider")
        assert g4f.chat_requests()[0].json["max_tokens"] == 1
        with pytest.raises(ModelProviderFailed):
            await client.probe(model="fail-500")
        with pytest.raises(ModelNotOffered):
            await client.probe(model="gpt-9")
    assert g4f.calls_by_model["fail-500"] == 1 and "gpt-4o-mini" not in g4f.calls_by_model


async def test_retries_5xx_before_first_token_with_backoff(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    g4f.fail_times = 2
    clock = InstantClock()
    async with G4FClient(make_settings(g4f_retries=2), clock=clock) as client:
        _, text = await collect(client, "flaky-500")
    assert text == "You said: hello there"
    assert g4f.calls_by_model["flaky-500"] == 3
    assert len(clock.sleeps) == 2
    assert 0.25 <= clock.sleeps[0] <= 0.5 and 0.5 <= clock.sleeps[1] <= 1.0


async def test_retry_after_is_respected(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    g4f.fail_times = 1
    g4f.retry_after = 3
    clock = InstantClock()
    async with G4FClient(make_settings(g4f_retries=1), clock=clock) as client:
        result = await client.chat(HELLO, model="flaky-429")
    assert result.text == "You said: hello there"
    assert clock.sleeps == [3.0]


async def test_rate_limit_reported_when_retries_run_out(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    g4f.retry_after = 7
    async with G4FClient(make_settings(), clock=InstantClock()) as client:
        with pytest.raises(RateLimited) as caught:
            await collect(client, "fail-429")
    assert caught.value.retry_after == 7
    assert "Try again in 7 s" in caught.value.user_message


async def test_fallback_models_after_retries(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    settings = make_settings(g4f_retries=1, g4f_fallback_models="fail-429,gpt-4o-mini")
    clock = InstantClock()
    async with G4FClient(settings, clock=clock) as client:
        stream = client.chat_stream(HELLO, model="fail-500")
        text = "".join([d.content async for d in stream])
    assert text == "You said: hello there"
    assert stream.model == "gpt-4o-mini"
    models = [r.json["model"] for r in g4f.chat_requests()]
    assert models == ["fail-500", "fail-500", "fail-429", "fail-429", "gpt-4o-mini"]


async def test_nothing_is_retried_after_text_reached_the_caller(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    settings = make_settings(g4f_retries=3, g4f_fallback_models="gpt-4o")
    async with G4FClient(settings, clock=InstantClock()) as client:
        with pytest.raises(ProviderFailed):
            await collect(client, "midstream-error")
    assert len(g4f.chat_requests()) == 1


async def test_a_proxy_500_says_to_try_again(make_settings: MakeSettings) -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>502 Bad Gateway</html>")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", bad_gateway)
    async with serve_app(app) as root:
        url = root + "/v1"
        async with G4FClient(make_settings(g4f_base_url=url)) as client:
            with pytest.raises(ProviderFailed) as caught:
                await collect(client, "gpt-4o")
    assert caught.value.user_message == (
        "The AI server (or a proxy in front of it) failed with HTTP 502. Try again in a minute."
    )
    assert "502 Bad Gateway" in caught.value.detail


async def test_cannot_connect_says_what_to_start(make_settings: MakeSettings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    async with G4FClient(make_settings(g4f_base_url=url)) as client:
        with pytest.raises(CannotConnect) as caught:
            await collect(client, "gpt-4o")
    assert url in caught.value.user_message
    assert "G4F_BASE_URL" in caught.value.user_message


async def test_first_token_timeout(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    g4f.first_token_delay = 2.0
    async with G4FClient(make_settings(g4f_timeout_first_token=0.2)) as client:
        with pytest.raises(UpstreamTimeout) as caught:
            await collect(client, "slow-first")
    assert caught.value.phase == "first_token"
    assert "G4F_TIMEOUT_FIRST_TOKEN" in caught.value.user_message


async def test_idle_timeout_keeps_partial_text(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    g4f.trickle_interval = 2.0
    g4f.answers["hello there"] = "one two three"
    async with G4FClient(make_settings(g4f_timeout_idle=0.2)) as client:
        with pytest.raises(UpstreamTimeout) as caught:
            await collect(client, "trickle")
    assert caught.value.phase == "idle"
    assert caught.value.partial_text == "one"
    assert "G4F_TIMEOUT_IDLE" in caught.value.user_message


async def test_total_timeout(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    g4f.trickle_interval = 0.1
    g4f.answers["hello there"] = " ".join(["word"] * 40)
    settings = make_settings(g4f_timeout_total=0.35, g4f_timeout_connect=0.3)
    async with G4FClient(settings) as client:
        with pytest.raises(UpstreamTimeout) as caught:
            await collect(client, "trickle")
    assert caught.value.phase == "total"
    assert caught.value.partial_text.startswith("word word")


class TestAuth:
    async def test_missing_key_is_reported(self, make_settings: MakeSettings) -> None:
        async with FakeG4F(api_key="test-key-not-real") as server:
            settings = make_settings(g4f_base_url=server.base_url)
            async with G4FClient(settings) as client:
                with pytest.raises(AuthFailed) as caught:
                    await client.list_models()
        assert "G4F_API_KEY" in caught.value.user_message
        assert "test-key-not-real" not in str(caught.value)

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("g4f-api-key", ("g4f-api-key", "k-123456789")),
            ("authorization", ("authorization", "Bearer k-123456789")),
        ],
    )
    async def test_key_goes_in_the_configured_header(
        self, make_settings: MakeSettings, header: str, expected: tuple[str, str]
    ) -> None:
        async with FakeG4F(api_key="k-123456789") as server:
            settings = make_settings(
                g4f_base_url=server.base_url, g4f_api_key="k-123456789", g4f_api_key_header=header
            )
            async with G4FClient(settings) as client:
                await client.list_models()
                image = await client.generate_image("a cat", model="flux")
            assert image.content_type == "image/png"
            name, value = expected
            assert all(r.headers.get(name) == value for r in server.requests)

    async def test_provider_needing_auth(self, g4f: FakeG4F, make_settings: MakeSettings) -> None:
        async with G4FClient(make_settings()) as client:
            with pytest.raises(AuthFailed) as caught:
                await collect(client, "fail-401")
        assert "provider needs credentials" in caught.value.user_message


async def test_pinned_provider_goes_into_the_body(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    async with G4FClient(make_settings(g4f_provider="PollinationsAI")) as client:
        await collect(client, "gpt-4o")
        await client.chat(HELLO, model="gpt-4o", provider="OpenaiChat")
    bodies = [r.json for r in g4f.chat_requests()]
    assert [b["provider"] for b in bodies] == ["PollinationsAI", "OpenaiChat"]


async def test_unknown_provider(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    async with G4FClient(make_settings(g4f_provider="Nope")) as client:
        with pytest.raises(ProviderNotFound) as caught:
            await collect(client, "gpt-4o")
    assert "'Nope'" in caught.value.user_message


async def test_rejected_request(g4f: FakeG4F, make_settings: MakeSettings) -> None:
    async with G4FClient(make_settings()) as client:
        with pytest.raises(RequestRejected) as caught:
            await collect(client, "fail-422")
    assert caught.value.user_message == "The AI server rejected the request as invalid."


async def test_models_tell_providers_and_image_models_apart(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    async with G4FClient(make_settings(g4f_image_models="gpt-4.1")) as client:
        models = {m.id: m for m in await client.list_models()}
        await client.list_models()
    assert models["PollinationsAI"].is_provider and not models["PollinationsAI"].draws_images
    assert not models["gpt-4o"].is_provider and not models["gpt-4o"].draws_images
    for image_model in ("flux", "flux-dev", "dall-e-3", "sdxl-turbo", "gpt-image", "gpt-4.1"):
        assert models[image_model].draws_images, image_model
    assert len([r for r in g4f.requests if r.path == "/v1/models"]) == 1  # cached


class TestImages:
    @pytest.mark.parametrize(
        "model", ["flux", "img-relative", "img-data", "img-foreign-host", "dall-e-3"]
    )
    async def test_every_url_form_gives_bytes(
        self, g4f: FakeG4F, make_settings: MakeSettings, model: str
    ) -> None:
        async with G4FClient(make_settings()) as client:
            image = await client.generate_image("a red fox", model=model)
        assert image.data == g4f.image_bytes
        assert image.content_type == "image/png"
        assert image.revised_prompt and "a red fox" in image.revised_prompt
        assert image.model == model
        body = [r for r in g4f.requests if r.method == "POST"][-1]
        assert body.path == "/v1/images/generate"
        assert body.json == {"prompt": "a red fox", "model": model}

    async def test_b64_json(self, g4f: FakeG4F, make_settings: MakeSettings) -> None:
        # A server answering b64_json by itself (as OpenAI does) is handled too.
        from core.api_models import ImageItem
        from core.images import ImageFetcher

        async with G4FClient(make_settings()) as client:
            fetcher = ImageFetcher(client.settings, client._http)
            item = ImageItem(b64_json=base64.b64encode(g4f.image_bytes).decode())
            data, kind = await fetcher.fetch(item)
        assert (data, kind) == (g4f.image_bytes, "image/png")

    async def test_pinned_provider_uses_the_path_form(
        self, g4f: FakeG4F, make_settings: MakeSettings
    ) -> None:
        async with G4FClient(make_settings(g4f_provider="PollinationsAI")) as client:
            await client.generate_image("a cat")
        post = [r for r in g4f.requests if r.method == "POST"][-1]
        assert post.path == "/api/PollinationsAI/images/generations"
        assert "provider" not in (post.json or {})

    async def test_falls_back_to_openai_path(
        self, g4f: FakeG4F, make_settings: MakeSettings
    ) -> None:
        g4f.disabled_paths.add("/v1/images/generate")
        async with G4FClient(make_settings()) as client:
            image = await client.generate_image("a cat")
        assert image.data == g4f.image_bytes
        posts = [r.path for r in g4f.requests if r.method == "POST"]
        assert posts == ["/v1/images/generate", "/v1/images/generations"]

    @pytest.mark.parametrize(
        ("model", "message"),
        [
            ("img-redirect-private", "private network"),
            ("img-bad-port", "not usable"),
            ("img-backslash", "not usable"),
            ("img-html", "not an image"),
            ("img-big", "larger than the 1 MiB limit"),
            ("img-empty", "returned no image"),
        ],
    )
    async def test_refused_downloads(
        self, g4f: FakeG4F, make_settings: MakeSettings, model: str, message: str
    ) -> None:
        async with G4FClient(make_settings(g4f_image_max_bytes=1024 * 1024)) as client:
            with pytest.raises(ImageFailed) as caught:
                await client.generate_image("a cat", model=model)
        assert message in caught.value.user_message
        assert not any(r.headers.get("host", "").startswith("127.0.0.2") for r in g4f.requests)

    async def test_slow_download_is_time_limited(
        self, g4f: FakeG4F, make_settings: MakeSettings
    ) -> None:
        g4f.first_token_delay = 2.0
        async with G4FClient(make_settings(g4f_image_timeout=0.2)) as client:
            with pytest.raises(ImageFailed) as caught:
                await client.generate_image("a cat", model="img-slow")
        assert "longer than 0.2 s" in caught.value.user_message


# --- text is text: surrogates -------------------------------------------------------------------

SPLIT_ANSWER = "Smile 😀 and 👍🏽 then 🇩🇪 done."
LONE_ANSWER_CLEAN = "Broken \ufffd here and \ufffd there."


def encodable(text: str) -> bool:
    """Whether `text` can be encoded (stored, sent, measured) at all."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def test_emoji_split_across_two_stream_events_is_joined(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    async with G4FClient(make_settings()) as client:
        deltas, text = await collect(client, "split-surrogate")
    assert text == SPLIT_ANSWER
    assert all(encodable(d.content) for d in deltas)  # no delta carries half a character
    assert deltas[-1].finish_reason == "stop"


async def test_lone_surrogates_in_a_stream_become_replacement_characters(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    async with G4FClient(make_settings()) as client:
        deltas, text = await collect(client, "lone-surrogate")
    assert text == LONE_ANSWER_CLEAN
    assert all(encodable(d.content) for d in deltas)


async def test_high_surrogate_at_the_end_of_a_stream_is_replaced(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    # The stream ends ("cutoff": no finish chunk, no [DONE]) right after a high surrogate.
    g4f.answers["hello there"] = "tail \ud83d"
    async with G4FClient(make_settings()) as client:
        with pytest.raises(AnswerCutOff) as caught:
            await collect(client, "cutoff")
    assert encodable(caught.value.partial_text or "")
    g4f.answers["hello there"] = "end \ud83d"
    async with G4FClient(make_settings()) as client:
        _, text = await collect(client, "gpt-4o")
    assert text == "end \ufffd"


@pytest.mark.parametrize(
    ("model", "expected"),
    [("split-surrogate", SPLIT_ANSWER), ("lone-surrogate", LONE_ANSWER_CLEAN)],
)
async def test_whole_answers_are_clean_text(
    g4f: FakeG4F, make_settings: MakeSettings, model: str, expected: str
) -> None:
    async with G4FClient(make_settings()) as client:
        result = await client.chat(HELLO, model=model)
    assert result.text == expected


async def test_whole_answer_with_a_lone_surrogate_escape_is_read_not_refused(
    g4f: FakeG4F, make_settings: MakeSettings
) -> None:
    # The JSON body holds "\ud83d" alone, which pydantic's parser refuses as invalid JSON.
    g4f.answers["hello there"] = "whole \ud83d and 😀"
    async with G4FClient(make_settings()) as client:
        result = await client.chat(HELLO, model="gpt-4o")
    assert result.text == "whole \ufffd and 😀"
