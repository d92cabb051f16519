"""Stop a generation that has fallen into a loop.

Small models decoded greedily can repeat one phrase until `max_tokens` ("la femme au martyre, la femme
au martyre, ..."), which burns the slot and the client's timeout for nothing. Sampling already
penalises repeats (llama.cpp's DRY sampler, see `engines/cpu.py`); this is the backstop: when the end
of the text is one chunk repeated several times over, the generation is over.
"""

from __future__ import annotations

_TAIL = 2048  # characters kept: enough for the longest period times its repetitions


class RepeatGuard:
    """Fed the generated text piece by piece; `looping` turns true once the text ends in a loop.

    A loop is a chunk of `period` characters (1 to `max_period`) repeated back to back at least
    `repeats` times and over at least `min_span` characters, so that a row of dashes in a table or a
    short counted list ("1. 1\\n2. 2\\n...", no two items alike) is not taken for one."""

    def __init__(self, repeats: int = 3, min_span: int = 96, max_period: int = 256) -> None:
        self.repeats = repeats
        self.min_span = min_span
        self.max_period = max_period
        self.text = ""
        self.looping = False

    def feed(self, piece: str) -> bool:
        if self.looping or not piece:
            return self.looping
        self.text = (self.text + piece)[-_TAIL:]
        self.looping = self._ends_in_loop()
        return self.looping

    def _ends_in_loop(self) -> bool:
        text = self.text
        n = len(text)
        for period in range(1, min(self.max_period, n // self.repeats) + 1):
            times = max(self.repeats, -(-self.min_span // period))
            span = period * times
            if span > n or text[-1] != text[n - 1 - period]:  # the cheap test first
                continue
            unit = text[n - period:]
            # compare the tail with the unit repeated: one C-level comparison per period
            if text[n - span:] == unit * times:
                return True
        return False
