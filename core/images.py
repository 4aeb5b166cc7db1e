"""Fetching the bytes of a generated image safely.

The API may answer with b64_json, a data: URI, a relative /media/... path, or an absolute URL (the
provider's, or the g4f server's own, which chat platforms cannot reach). We always download the
bytes ourselves: size-capped, content-type checked, time-limited, following at most a few
redirects, and refusing private or loopback addresses other than the configured API host (so a
malicious answer cannot make the bot read an internal service).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from core.api_models import ImageItem
from core.errors import ImageFailed
from core.settings import Settings
from core.wire import read_capped

MAX_REDIRECTS = 5
ALLOWED_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


def sniff_type(data: bytes) -> str | None:
    """The image type from the first bytes, or None."""
    for magic, kind in MAGIC.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class ImageFetcher:
    """Turns an API image item into (bytes, content type)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        api = urlsplit(settings.api_root_url)
        self._api_origin = (api.scheme, api.hostname or "", api.port or _default_port(api.scheme))

    async def fetch(self, item: ImageItem) -> tuple[bytes, str]:
        if item.b64_json:
            return self._checked(_b64decode(item.b64_json), None)
        if not item.url:
            raise ImageFailed("The image model returned no image. Try another prompt or model.")
        if item.url.startswith("data:"):
            return self._decode_data_url(item.url)
        try:
            async with asyncio.timeout(self._settings.g4f_image_timeout):
                return await self._download(urljoin(self._settings.api_root_url + "/", item.url))
        except TimeoutError:
            raise ImageFailed(
                f"Downloading the image took longer than {self._settings.g4f_image_timeout:g} s.",
            ) from None

    def _decode_data_url(self, url: str) -> tuple[bytes, str]:
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise ImageFailed("The image could not be read.", detail="data: URL not base64")
        declared = header[5:].split(";")[0] or None
        return self._checked(_b64decode(payload), declared)

    async def _download(self, url: str) -> tuple[bytes, str]:
        for hop in range(MAX_REDIRECTS + 1):
            url, is_api_host = await self._vet(url, from_api=hop == 0)
            headers = self._settings.auth_headers() if is_api_host else {}
            request = self._http.build_request("GET", url, headers=headers)
            if not is_api_host:
                # Never send our API key to another host.
                for name in self._settings.auth_headers():
                    request.headers.pop(name, None)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise ImageFailed("The image could not be downloaded.", detail=repr(exc)) from None
            try:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if not response.is_success:
                    raise ImageFailed(
                        "The image could not be downloaded.",
                        detail=f"HTTP {response.status_code} for {url}",
                    )
                declared = response.headers.get("content-type", "").split(";")[0].strip()
                if declared and not declared.startswith("image/"):
                    raise ImageFailed(
                        "The server sent something that is not an image.",
                        detail=f"content-type {declared}",
                    )
                data = await self._read_capped(response)
            finally:
                await response.aclose()
            return self._checked(data, declared or None)
        raise ImageFailed("The image could not be downloaded.", detail="too many redirects")

    async def _vet(self, url: str, *, from_api: bool) -> tuple[str, bool]:
        """Check where a URL points; rewrite the g4f server's own /media links to the API host.

        `from_api`: the URL came in the API's answer (not from a redirect).
        """
        # Vetted with the parser that makes the request (httpx), so the host checked is the host
        # asked: no backslash or "@" trick can make them differ.
        unusable = ImageFailed("The image address is not usable.", detail=f"url {url[:100]!r}")
        if any(c in url for c in "\\ \t\r\n") or not url.isprintable():
            raise unusable
        try:
            parts = httpx.URL(url)
            port = parts.port
        except (httpx.InvalidURL, ValueError):
            raise unusable from None
        if parts.scheme not in ("http", "https") or not parts.host or parts.userinfo:
            raise unusable
        if port is not None and not 0 < port < 65536:
            raise unusable
        origin = (parts.scheme, parts.host, port or _default_port(parts.scheme))
        if origin == self._api_origin:
            return url, True
        private = await _is_private_host(parts.host)
        if private and from_api and parts.path.startswith("/media/"):
            # g4f links its own files with the address it listens on (127.0.0.1:1337), which is
            # not how we reach it (e.g. http://g4f:8080 in compose): fetch from the API host.
            query = parts.query.decode("ascii", "replace")
            path = parts.path + (f"?{query}" if query else "")
            return self._settings.api_root_url + path, True
        if private:
            raise ImageFailed(
                "The image address points into a private network and was not fetched.",
                detail=f"refused host {parts.host}",
            )
        return url, False

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self._settings.g4f_image_max_bytes
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            raise _too_big(cap)
        data, more = await read_capped(response.aiter_bytes(), cap)
        if more:
            raise _too_big(cap)
        return data

    def _checked(self, data: bytes, declared: str | None) -> tuple[bytes, str]:
        cap = self._settings.g4f_image_max_bytes
        if len(data) > cap:
            raise _too_big(cap)
        kind = sniff_type(data) or (declared if declared in ALLOWED_TYPES else None)
        if kind is None:
            raise ImageFailed(
                "The server sent something that is not an image.", detail=f"declared {declared}"
            )
        return data, kind


def _too_big(cap: int) -> ImageFailed:
    return ImageFailed(
        f"The image is larger than the {cap / 1024 / 1024:g} MiB limit (G4F_IMAGE_MAX_BYTES)."
    )


def _b64decode(payload: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise ImageFailed("The image could not be read.", detail="bad base64") from None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


async def _is_private_host(host: str) -> bool:
    """Whether a host name or literal resolves to a loopback, private or link-local address."""
    try:
        return _is_private_ip(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False  # unresolvable: the download itself will fail
    return any(_is_private_ip(ipaddress.ip_address(info[4][0])) for info in infos)


def _is_private_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )
