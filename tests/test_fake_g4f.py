"""Wire-format checks of the emulated G4F server (tests/fakes/g4f_server.py), with raw httpx."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.g4f_server import FakeG4F, long_code_answer, split_answer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def g4f() -> AsyncIterator[FakeG4F]:
    async with FakeG4F() as server:
        server.first_token_delay = 0.2
        server.trickle_interval = 0.1
        yield server


@pytest.fixture
async def http(g4f: FakeG4F) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=g4f.root_url, timeout=5) as client:
        yield client


def chat_body(model: str, prompt: str = "hi", stream: bool = False, **extra: Any) -> Any:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
        **extra,
    }


def events(raw: str) -> list[Any]:
    """Parse an SSE body that must be made only of `data: X\\n\\n` events."""
    assert raw.endswith("\n\n")
    out: list[Any] = []
    for block in raw[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        data = block.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def content_of(chunks: list[Any]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if isinstance(c, dict) and "choices" in c
    )


async def test_models_and_providers(http: httpx.AsyncClient) -> None:
    for path in ("/v1/models", "/v1/models/"):
        body = (await http.get(path)).json()
        assert body["object"] == "list"
    ids = {m["id"]: m for m in body["data"]}
    assert {"gpt-4o", "flux", "dall-e-3", "reasoner", "img-big", "drop"} <= set(ids)
    assert ids["PollinationsAI"]["provider"] is True and ids["gpt-4o"]["provider"] is False
    assert not any(m["image"] or m["vision"] for m in body["data"])
    assert (await http.get("/v1/models/flux")).json()["id"] == "flux"
    missing = await http.get("/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"message": "The model does not exist."}}
    providers = (await http.get("/v1/providers")).json()
    assert {"id", "object", "created", "url", "label"} <= set(providers[0])
    detail = (await http.get("/v1/providers/PollinationsAI")).json()
    assert "flux" in detail["image_models"] and "vision_models" in detail
    assert (await http.get("/v1/providers/Nope")).status_code == 404


async def test_auth_every_path() -> None:
    async with (
        FakeG4F(api_key="sekret") as server,
        httpx.AsyncClient(base_url=server.root_url) as http,
    ):
        denied = await http.get("/media/a.png")
        assert denied.status_code == 401
        assert denied.json() == {"error": {"message": "Not authenticated"}}
        assert denied.headers["www-authenticate"] == "Basic"
        assert (await http.get("/v1/models", headers={"g4f-api-key": "wrong"})).status_code == 401
        for headers in ({"g4f-api-key": "sekret"}, {"Authorization": "Bearer sekret"}):
            assert (await http.get("/v1/models", headers=headers)).status_code == 200
        assert (await http.get("/v1/models", auth=("any", "sekret"))).status_code == 200
        assert server.requests[0].path == "/media/a.png"


async def test_chat_non_stream_shape(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    g4f.answers["ping"] = "pong!"
    reply = (await http.post("/v1/chat/completions", json=chat_body("gpt-4o", "ping"))).json()
    assert reply["object"] == "chat.completion" and reply["model"] == "gpt-4o"
    assert reply["provider"] == "FakeProvider"
    choice = reply["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "pong!",
        "reasoning": None,
        "tool_calls": None,
        "audio": None,
    }
    assert choice["finish_reason"] == "stop"
    assert set(reply["usage"]) >= {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "estimated_cost",
    }
    parts = chat_body("blank-model", "x")
    parts["messages"][0]["content"] = [{"type": "text", "text": "multi"}]
    reply = (await http.post("/v1/chat/completions", json=parts)).json()
    assert reply["model"] == "" and reply["choices"][0]["message"]["content"] == "You said: multi"
    recorded = g4f.chat_requests()
    assert len(recorded) == 2 and recorded[0].json["messages"][0]["content"] == "ping"
    assert recorded[0].headers["content-type"] == "application/json"


async def test_chat_routing_errors(http: httpx.AsyncClient) -> None:
    bad = await http.post("/v1/chat/completions", json={"model": "gpt-4o"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "messages"] and "error" not in bad.json()
    assert (await http.post("/v1/chat/completions", content=b"{oops")).status_code == 422
    unknown = await http.post("/v1/chat/completions", json=chat_body("gpt-99"))
    assert unknown.status_code == 500
    assert unknown.json() == {"error": {"message": "Request execution failed"}, "model": "gpt-99"}
    prov = await http.post("/v1/chat/completions", json=chat_body("gpt-4o", provider="Nope"))
    assert prov.status_code == 404
    assert prov.json()["error"]["message"] == "Provider not found: Nope"
    ok = await http.post("/v1/chat/completions", json=chat_body("gpt-4o", provider="Copilot"))
    assert ok.status_code == 200


async def test_stream_format(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    g4f.answers["q"] = "Hello there,  dear\nfriend. "
    g4f.chunk_size_words = 2
    resp = await http.post("/v1/chat/completions", json=chat_body("gpt-4o", "q", stream=True))
    assert resp.headers["content-type"] == "text/event-stream"
    chunks = events(resp.text)
    assert chunks[-1] == "[DONE]"
    *body, last = chunks[:-1]
    pieces = [c["choices"][0]["delta"]["content"] for c in body]
    assert pieces == ["Hello there,", "  dear\nfriend. "]
    assert all(
        c["object"] == "chat.completion.chunk"
        and c["choices"][0]["finish_reason"] is None
        and c["choices"][0]["delta"]["role"] == "assistant"
        for c in body
    )
    assert last["choices"][0] == {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "finish_reason": "stop",
    }
    assert last["usage"]["completion_tokens"] == 4
    assert split_answer("  lead space", 1) == ["lead", " space"]


async def test_streams_are_recorded_with_their_content_times() -> None:
    ticks = iter(range(1000))
    async with FakeG4F(clock=lambda: float(next(ticks))) as server:
        server.answers["q"] = "one two three"
        server.answers["long"] = "one two three four five six"
        async with httpx.AsyncClient(base_url=server.root_url, timeout=5) as client:
            await client.post("/v1/chat/completions", json=chat_body("reasoner", "q", True))
            await client.post(
                "/v1/chat/completions", json=chat_body("midstream-error", "long", True)
            )
            await client.post("/v1/chat/completions", json=chat_body("gpt-4o", "q"))  # no stream
    whole, broken = server.streams
    assert (whole.prompt, whole.model, whole.text) == ("q", "reasoner", "one two three")
    # Each content frame takes a tick: the reasoning frames before it do not count.
    assert (whole.started_at, whole.first_content_at, whole.last_content_at) == (0.0, 1.0, 3.0)
    assert whole.finished_at == 4.0
    assert (broken.text, broken.first_content_at, broken.finished_at) == ("one two three", 6, 9)


async def test_streams_in_flight_count_until_their_end_is_written(
    g4f: FakeG4F, http: httpx.AsyncClient
) -> None:
    g4f.trickle_interval = 0.05
    g4f.answers["long"] = " ".join(f"w{i}" for i in range(400))  # 20 s
    g4f.answers["short"] = "one two"
    async with http.stream(
        "POST", "/v1/chat/completions", json=chat_body("trickle", "long", True)
    ) as first:
        lines = first.aiter_lines()
        assert (await anext(lines)).startswith("data: ")
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat_body("trickle", "long", True)
        ) as second:
            assert (await anext(second.aiter_lines())).startswith("data: ")
            assert (g4f.streams_in_flight, g4f.max_streams_in_flight) == (2, 2)
        # The second client went away: its stream leaves the count at its next write.
        async with asyncio.timeout(5):
            while g4f.streams_in_flight != 1:
                await asyncio.sleep(0.01)
        g4f.reset_streams_in_flight()
        assert g4f.max_streams_in_flight == 1
        whole = await http.post("/v1/chat/completions", json=chat_body("trickle", "short", True))
        assert content_of(events(whole.text)) == "one two"
        assert (g4f.streams_in_flight, g4f.max_streams_in_flight) == (1, 2)
    async with asyncio.timeout(5):
        while g4f.streams_in_flight:
            await asyncio.sleep(0.01)
    assert g4f.max_streams_in_flight == 2


def test_long_code_answer_has_two_code_blocks() -> None:
    text = long_code_answer()
    assert 11_000 <= len(text) <= 13_000
    assert [line for line in text.split("\n") if line.startswith("```")] == [
        "```python",
        "```",
        "```js",
        "```",
    ]
    assert long_code_answer() == text and len(long_code_answer(3000)) < 4000


async def test_stream_reasoner_and_tools(http: httpx.AsyncClient) -> None:
    resp = await http.post("/v1/chat/completions", json=chat_body("reasoner", stream=True))
    deltas = [c["choices"][0]["delta"] for c in events(resp.text)[:-1]]
    reasoning = [d["reasoning"] for d in deltas if "reasoning" in d]
    assert reasoning[-1] == "\n" and len(reasoning) >= 3
    assert all(d["content"] == "" for d in deltas[: len(reasoning)])
    assert content_of(events(resp.text)) == "You said: hi"
    tools = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    resp = await http.post(
        "/v1/chat/completions", json=chat_body("tools", stream=True, tools=[tools])
    )
    chunks = events(resp.text)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[:-2]]
    assert calls[0]["function"]["name"] == "lookup" and calls[0]["extra_content"] is None
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments) == {"query": "hi"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
async def test_failures_are_plain_http_errors(http: httpx.AsyncClient, stream: bool) -> None:
    post = http.post
    r500 = await post("/v1/chat/completions", json=chat_body("fail-500", stream=stream))
    assert r500.status_code == 500 and r500.json()["provider"] == "FakeProvider"
    r401 = await post("/v1/chat/completions", json=chat_body("fail-401", stream=stream))
    assert r401.status_code == 401 and "MissingAuthError" in r401.json()["error"]["message"]
    r429 = await post("/v1/chat/completions", json=chat_body("fail-429", stream=stream))
    assert r429.status_code == 429 and r429.headers["retry-after"] == "1"
    assert r429.headers["content-type"].startswith("application/json")


async def test_down_models_fail_like_a_dead_provider(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    g4f.down_models.add("gpt-4o")
    for stream in (False, True):
        down = await http.post("/v1/chat/completions", json=chat_body("gpt-4o", stream=stream))
        assert down.status_code == 500
        assert down.json() == {
            "error": {"message": "Request execution failed"},
            "model": "gpt-4o",
            "provider": "FakeProvider",
        }
    listed = await http.get("/v1/models/gpt-4o")
    assert listed.status_code == 200  # still offered: only its provider fails
    g4f.down_models.clear()
    assert (await http.post("/v1/chat/completions", json=chat_body("gpt-4o"))).status_code == 200


async def test_max_tokens_cuts_the_answer(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    g4f.answers["q"] = "one two three"
    reply = await http.post("/v1/chat/completions", json=chat_body("gpt-4o", "q", max_tokens=1))
    assert reply.json()["choices"][0]["message"]["content"] == "one"
    assert reply.json()["usage"]["completion_tokens"] == 1


async def test_flaky(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    g4f.fail_times = 1
    statuses = [
        (await http.post("/v1/chat/completions", json=chat_body(m))).status_code
        for m in ("flaky-429", "flaky-429", "flaky-500", "flaky-500")
    ]
    assert statuses == [429, 200, 500, 200]
    assert g4f.calls_by_model["flaky-429"] == 2


async def test_broken_streams(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    g4f.answers["long"] = "one two three four five six"
    mid = await http.post("/v1/chat/completions", json=chat_body("midstream-error", "long", True))
    assert mid.status_code == 200
    chunks = events(mid.text)
    assert content_of(chunks) == "one two three"
    assert chunks[-1] == {
        "error": {"message": "Request execution failed"},
        "model": "midstream-error",
        "provider": "FakeProvider",
    }
    cut = events(
        (await http.post("/v1/chat/completions", json=chat_body("cutoff", "long", True))).text
    )
    assert content_of(cut) == "one two three four five six" and "[DONE]" not in cut
    assert all(c["choices"][0]["finish_reason"] is None for c in cut)
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat_body("drop", "long", True)
        ) as resp:
            assert resp.status_code == 200
            async for data in resp.aiter_bytes():
                received += data
    assert b"three" in received and b"four" not in received
    for model in ("drop", "midstream-error"):
        plain = await http.post("/v1/chat/completions", json=chat_body(model))
        assert plain.status_code == 500


async def test_timing_models(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    start = time.monotonic()
    async with http.stream(
        "POST", "/v1/chat/completions", json=chat_body("slow-first", stream=True)
    ) as resp:
        assert time.monotonic() - start >= 0.18
        await resp.aread()
    g4f.trickle_interval = 0.05
    async with http.stream(
        "POST", "/v1/chat/completions", json=chat_body("trickle", "a b c", stream=True)
    ) as resp:
        arrivals = []
        async for line in resp.aiter_lines():
            if line:
                arrivals.append(time.monotonic())
    assert arrivals[1] - arrivals[0] >= 0.04


async def test_stop_closes_open_streams() -> None:
    server = FakeG4F()
    await server.start()
    server.trickle_interval = server.first_token_delay = 60
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
        async with http.stream(
            "POST", "/chat/completions", json=chat_body("trickle", "a b c", True)
        ) as resp:
            lines = resp.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
            slow = asyncio.create_task(
                http.post("/chat/completions", json=chat_body("slow-first", stream=True))
            )
            await asyncio.sleep(0.05)
            start = time.monotonic()
            await server.stop()
            assert time.monotonic() - start < 2
            with pytest.raises(httpx.HTTPError):
                async for _ in lines:
                    pass
        with pytest.raises(httpx.HTTPError):
            await slow


async def test_images(g4f: FakeG4F, http: httpx.AsyncClient) -> None:
    reply = (await http.post("/v1/images/generate", json={"prompt": "cat"})).json()
    item = reply["data"][0]
    assert item["url"].startswith(g4f.root_url + "/media/") and item["revised_prompt"]
    assert reply["model"] == "flux" and reply["provider"] == "FakeProvider"
    media = await http.get(item["url"])
    assert media.headers["content-type"] == "image/png" and media.content.startswith(PNG_MAGIC)
    b64 = (
        await http.post(
            "/v1/images/generations", json={"prompt": "cat", "response_format": "b64_json", "n": 2}
        )
    ).json()
    assert [base64.b64decode(i["b64_json"]) for i in b64["data"]] == [g4f.image_bytes] * 2

    async def url_for(model: str) -> str:
        resp = await http.post("/v1/media/generate", json={"prompt": "p", "model": model})
        return str(resp.json()["data"][0]["url"])

    assert (await url_for("img-relative")).startswith("/media/")
    assert (await url_for("img-data")).startswith("data:image/png;base64,")
    assert (await url_for("img-foreign-host")).startswith(f"http://localhost:{g4f.port}/media/")
    redirect = await http.get(await url_for("img-redirect-private"))
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"http://127.0.0.2:{g4f.port}/media/x.png"
    big = await http.get(await url_for("img-big"))
    assert len(big.content) == g4f.big_image_size and big.content.startswith(PNG_MAGIC)
    html = await http.get(await url_for("img-html"))
    assert html.headers["content-type"].startswith("text/html")
    start = time.monotonic()
    assert (await http.get(await url_for("img-slow"))).status_code == 200
    assert time.monotonic() - start >= 0.18


async def test_image_errors(http: httpx.AsyncClient) -> None:
    post = http.post
    assert (await post("/v1/images/generate", json={"model": "flux"})).status_code == 422
    trap = await post("/v1/images/generate", json={"prompt": "p", "provider": "PollinationsAI"})
    assert trap.status_code == 500 and trap.json()["error"]["message"] == "Request execution failed"
    assert (await post("/api/Nope/images/generations", json={"prompt": "p"})).status_code == 404
    pinned = await post("/api/PollinationsAI/images/generations", json={"prompt": "p"})
    assert pinned.status_code == 200
    assert (
        await post("/v1/images/generate", json={"prompt": "p", "model": "img-fail"})
    ).status_code == 500
    empty = await post("/v1/images/generate", json={"prompt": "p", "model": "img-empty"})
    assert empty.json()["data"] == []


def test_standalone_process() -> None:
    cmd = [sys.executable, "-m", "tests.fakes.g4f_server", "--port", "0", "--api-key", "k"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:") and line.endswith("/v1")
        url = line.removeprefix("READY ")
        resp = httpx.get(url + "/models", headers={"g4f-api-key": "k"}, timeout=5)
        assert resp.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
