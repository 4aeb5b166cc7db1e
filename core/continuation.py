"""Answers cut at the model's length limit, and asking for the rest.

When a stream ends with ``finish_reason: "length"`` the model stopped because it ran out of
tokens, often mid-sentence or mid-code. The answer's last line says so, and a Continue button
(the terminal: ``/continue``) asks for the rest in the same conversation: a new answer that
replies to the cut one, prompted with `CONTINUE_PROMPT`, so it continues that answer's branch.
"""

from __future__ import annotations

from core.render.renderer import RenderOptions
from core.render.surface import Button

CONTINUE_BUTTON = Button("continue", "▶️ Continue")
LENGTH_NOTE = "✂️ The answer reached the model's length limit. Press Continue for the rest."
LENGTH_NOTE_TERMINAL = "✂️ The answer reached the model's length limit. /continue for the rest."
CONTINUE_PROMPT = "Continue exactly where you stopped."
NOTHING_TO_CONTINUE = "There is no answer here to continue. Ask a question first."


def length_note(*, has_buttons: bool) -> str:
    """The last line of an answer cut at the length limit."""
    return LENGTH_NOTE if has_buttons else LENGTH_NOTE_TERMINAL


def mark_cut(options: RenderOptions, *, buttons: bool) -> None:
    """An answer ended at the length limit: its final write says so and offers Continue."""
    options.extra_lines.append(length_note(has_buttons=buttons))
    if buttons:
        options.final_buttons = (CONTINUE_BUTTON, *options.final_buttons)
