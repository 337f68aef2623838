"""Date normalisation, a translation task that needs no download: many human ways of writing a date → ISO.

"Wednesday the twenty-first of March, nineteen ninety-eight" → "1998-03-21". The pairs are generated from the
seed, character by character: inputs run up to ~70 characters and the day, month and year sit far apart and in
varying order, which is where an encoder-decoder without attention falls behind.
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from classicnets.data.text.parallel import Pair, PairsDataModule

FIRST_DAY, DAYS = date(1900, 1, 1), (date(2099, 12, 31) - date(1900, 1, 1)).days
ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
IRREGULAR_ORDINALS = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth", 12: "twelfth"}


def number_words(n: int) -> str:
    """0..99 in words: "forty-two"."""
    if n < 20:
        return ONES[n]
    return TENS[n // 10] + (f"-{ONES[n % 10]}" if n % 10 else "")


def ordinal_words(n: int) -> str:
    """1..99 as an ordinal in words: "twenty-first", "thirtieth"."""
    if n < 20:
        return IRREGULAR_ORDINALS.get(n, f"{ONES[n]}th")
    if n % 10 == 0:
        return TENS[n // 10][:-1] + "ieth"
    return f"{TENS[n // 10]}-{ordinal_words(n % 10)}"


def ordinal_suffix(n: int) -> str:
    """1 → "1st", 12 → "12th", 23 → "23rd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def year_words(year: int, rng: random.Random) -> str:
    """1998 → "nineteen ninety-eight", 1905 → "nineteen oh-five", 2026 → "twenty twenty-six" or "two thousand
    twenty-six"."""
    century, rest = divmod(year, 100)
    if century == 20 and (rest < 10 or rng.random() < 0.5):
        return "two thousand" + (f" {number_words(rest)}" if rest else "")
    if rest == 0:
        return f"{number_words(century)} hundred"
    return f"{number_words(century)} " + (f"oh-{ONES[rest]}" if rest < 10 else number_words(rest))


def _formats(d: date, rng: random.Random) -> list[Callable[[], str]]:
    month, mon = calendar.month_name[d.month], calendar.month_abbr[d.month]
    weekday, wkd = calendar.day_name[d.weekday()], calendar.day_abbr[d.weekday()]
    return [
        lambda: f"{d.day} {month} {d.year}",
        lambda: f"{month} {d.day}, {d.year}",
        lambda: f"{mon} {d.day} {d.year}",
        lambda: f"{d.day:02d}/{d.month:02d}/{d.year}",
        lambda: f"{d.day}.{d.month}.{d.year}",
        lambda: f"{d.year}/{d.month}/{d.day}",
        lambda: f"{weekday}, {d.day} {month} {d.year}",
        lambda: f"{wkd} {mon} {d.day} {d.year}",
        lambda: f"{month} {ordinal_suffix(d.day)}, {d.year}",
        lambda: f"the {ordinal_suffix(d.day)} of {month} {d.year}",
        lambda: f"{weekday} the {ordinal_words(d.day)} of {month}, {year_words(d.year, rng)}",
        lambda: f"{ordinal_words(d.day)} of {month} {year_words(d.year, rng)}",
        lambda: f"{month} the {ordinal_words(d.day)}, {year_words(d.year, rng)}",
        lambda: f"{d.day} {mon} {year_words(d.year, rng)}",
    ]


def generate_dates(count: int, seed: int) -> list[Pair]:
    """`count` pairs (human date, ISO date) with distinct human dates, the same for the same seed."""
    rng = random.Random(seed)
    pairs: dict[str, str] = {}
    while len(pairs) < count:
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS + 1))
        text = rng.choice(_formats(day, rng))()
        casing = rng.random()
        text = text.lower() if casing < 0.6 else text.upper() if casing < 0.75 else text
        pairs.setdefault(text, day.isoformat())
    return list(pairs.items())


class DatesDataModule(PairsDataModule):
    """Generated date-normalisation pairs, character-level; train, val and test hold distinct inputs."""

    def __init__(
        self, num_train: int = 20000, num_val: int = 1000, num_test: int = 2000, **kwargs: Any
    ) -> None:
        super().__init__(**{"tokenizer": "char", **kwargs})
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test

    def load_pairs(self) -> dict[str, list[Pair]]:
        pairs = generate_dates(self.num_train + self.num_val + self.num_test, self.seed)
        val_end = self.num_train + self.num_val
        return {
            "train": pairs[: self.num_train],
            "val": pairs[self.num_train : val_end],
            "test": pairs[val_end:],
        }
