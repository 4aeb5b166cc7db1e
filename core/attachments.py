"""Images and files in prompts: what a user attached, checked, and how it reaches the model.

Adapters hand the bridge `Attachment`s (a name, what the platform says it is, the bytes, read
with a size cap of `MAX_ATTACHMENT_BYTES`). `sort_attachments` checks each one:
- an image (PNG, JPEG, WebP, GIF, told by its bytes, within G4F_IMAGE_MAX_BYTES) goes to the
  model as an OpenAI content part, ``image_url`` with a data URI, and is stored once with the
  question's turn, so a follow-up in the same branch can ask about it again (as long as that
  turn is within the history limits: `build_history` only attaches images of the turns it keeps,
  and at most `MAX_IMAGES_SENT` of the newest);
- a text file (txt, md, code, json, csv, logs) up to `MAX_TEXT_FILE_BYTES`, read as UTF-8, is
  put into the prompt with its name;
- anything else is refused with one line saying what is accepted (`ACCEPTED_LINE`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from core.api_models import ImagePart, ImageUrl
from core.errors import UpstreamError
from core.images import sniff_type

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024  # adapters read no more than this of one attachment
MAX_TEXT_FILE_BYTES = 64 * 1024
MAX_FILES = 5
MAX_IMAGES_SENT = 4  # images in one request, the newest first
TEXT_SUFFIXES = frozenset(
    ".txt .md .markdown .rst .log .csv .tsv .json .jsonl .yaml .yml .toml .ini .cfg .conf .xml "
    ".html .css .py .js .ts .tsx .jsx .java .kt .go .rs .c .h .cpp .hpp .cs .rb .php .sh .bash "
    ".sql .swift .lua .r .pl .scala .dart .vue .env .diff .patch".split()
)
ACCEPTED_LINE = (
    "I can read images (PNG, JPEG, WebP, GIF) and text files (txt, md, code, json, csv, logs) "
    f"up to {MAX_TEXT_FILE_BYTES // 1024} KiB; {{names}} {{verb}} not one of those."
)
NO_VISION = (
    "The model {model} can't see images. Choose a model that can (for example with /model), "
    "or ask without the picture."
)


@dataclass(frozen=True, slots=True)
class Attachment:
    """One file a user attached: its name, the type the platform gave it, and its bytes."""

    name: str
    data: bytes
    declared_type: str | None = None
    too_big: bool = False  # the platform said it is larger than the adapters read


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image kept with a turn."""

    content_type: str
    data: bytes

    def part(self) -> ImagePart:
        encoded = base64.b64encode(self.data).decode()
        return ImagePart(image_url=ImageUrl(url=f"data:{self.content_type};base64,{encoded}"))


@dataclass(slots=True)
class Sorted:
    """Attachments, checked: the images to send and store, the text to add, the refusals."""

    images: list[StoredImage] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one line per refused kind

    def prompt_with_files(self, prompt: str) -> str:
        """The question followed by each text file, fenced, under its name."""
        return "\n\n".join([prompt, *self.texts]) if self.texts else prompt


def sort_attachments(attachments: Sequence[Attachment], *, max_image_bytes: int) -> Sorted:
    """Check each attachment and sort it into images, text files and refusals."""
    out = Sorted()
    rejected: list[str] = []
    too_big: list[str] = []
    for attachment in attachments[:MAX_FILES]:
        name = _clean_name(attachment.name)
        kind = sniff_type(attachment.data[:16])
        if kind is not None:
            if attachment.too_big or len(attachment.data) > max_image_bytes:
                too_big.append(name)
            else:
                out.images.append(StoredImage(kind, attachment.data))
            continue
        if _is_text_name(name, attachment.declared_type):
            if attachment.too_big or len(attachment.data) > MAX_TEXT_FILE_BYTES:
                too_big.append(name)
                continue
            try:
                text = attachment.data.decode("utf-8")
            except UnicodeDecodeError:
                rejected.append(name)
                continue
            out.texts.append(_fenced(name, text))
            continue
        rejected.append(name)
    if len(attachments) > MAX_FILES:
        out.refused.append(f"Only the first {MAX_FILES} attachments were read.")
    if too_big:
        out.refused.append(
            f"{_names(too_big)} {'is' if len(too_big) == 1 else 'are'} too large: images up to "
            f"{max_image_bytes // (1024 * 1024)} MiB and text files up to "
            f"{MAX_TEXT_FILE_BYTES // 1024} KiB are read."
        )
    if rejected:
        verb = "is" if len(rejected) == 1 else "are"
        out.refused.append(ACCEPTED_LINE.format(names=_names(rejected), verb=verb))
    return out


def _is_text_name(name: str, declared: str | None) -> bool:
    suffix = PurePath(name).suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return True
    declared = (declared or "").split(";")[0].strip().lower()
    return declared.startswith("text/") or declared in ("application/json", "application/csv")


def _fenced(name: str, text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"File {name}:\n{fence}\n{text.rstrip()}\n{fence}"


def _clean_name(name: str) -> str:
    base = PurePath(name.replace("\\", "/")).name or "file"
    return "".join(c for c in base if c.isprintable())[:100] or "file"


def _names(names: list[str]) -> str:
    return ", ".join(names)


class ImagesNotSupported(UpstreamError):
    """The request carried images and the model (or its provider) refused it."""

    def __init__(self, model: str, *, detail: str = "") -> None:
        super().__init__(NO_VISION.format(model=model), detail=detail)
