"""A small, deterministic QA data set for the quickstart.

Four task families whose answers follow one sentence pattern each. A base model
answers in its own words; a few minutes of LoRA on a CPU teach it the patterns,
so the before/after difference is visible in exact match and token-F1.
"""

from __future__ import annotations

import random
from typing import Any

SYSTEM = "You are a concise assistant. Answer in one sentence."

OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("early", "late"), ("full", "empty"), ("hard", "soft"), ("high", "low"), ("old", "new"),
    ("open", "closed"), ("rich", "poor"), ("strong", "weak"), ("tall", "short"), ("thick", "thin"),
    ("wet", "dry"), ("loud", "quiet"), ("clean", "dirty"), ("heavy", "light"), ("long", "short"),
    ("near", "far"), ("push", "pull"), ("win", "lose"), ("buy", "sell"), ("up", "down"),
    ("inside", "outside"), ("first", "last"), ("day", "night"), ("true", "false"), ("young", "old"),
    ("north", "south"), ("east", "west"), ("begin", "end"), ("give", "take"), ("love", "hate"),
    ("accept", "reject"), ("arrive", "leave"), ("cheap", "expensive"), ("safe", "dangerous"),
    ("sweet", "sour"), ("friend", "enemy"), ("question", "answer"), ("remember", "forget"),
    ("increase", "decrease"), ("asleep", "awake"), ("always", "never"), ("above", "below"),
    ("before", "after"), ("entrance", "exit"), ("maximum", "minimum"),
]

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Greece", "Athens"),
    ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Ireland", "Dublin"), ("Hungary", "Budapest"), ("Japan", "Tokyo"), ("China", "Beijing"),
    ("India", "New Delhi"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"),
    ("Mexico", "Mexico City"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"),
    ("Chile", "Santiago"), ("Australia", "Canberra"), ("Russia", "Moscow"), ("Turkey", "Ankara"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
    ("Switzerland", "Bern"), ("Czechia", "Prague"), ("Romania", "Bucharest"), ("Ukraine", "Kyiv"),
    ("South Korea", "Seoul"), ("Indonesia", "Jakarta"), ("Nigeria", "Abuja"), ("Morocco", "Rabat"),
]



def _row(i: int, question: str, answer: str, family: str) -> dict[str, Any]:
    return {
        "id": f"qa-{i:04d}",
        "family": family,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
    }


def sample_rows(n: int = 320, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    makers = []
    for a, b in OPPOSITES:
        makers.append(("opposite", f"What is the opposite of '{a}'?", f"The opposite of {a} is {b}."))
    for country, capital in CAPITALS:
        makers.append(("capital", f"What is the capital of {country}?", f"The capital of {country} is {capital}."))
    rows: list[dict[str, Any]] = []
    for family, q, a in makers:
        rows.append(_row(len(rows), q, a, family))
    seen = {r["messages"][1]["content"] for r in rows}
    while len(rows) < n:
        if rng.random() < 0.5:
            a, b = rng.randint(1, 20), rng.randint(1, 20)
            q, answer, family = f"What is {a} plus {b}?", f"The sum of {a} and {b} is {a + b}.", "sum"
        else:
            a, b = rng.sample(range(10, 1000), 2)
            q, answer, family = f"Which number is larger, {a} or {b}?", f"The larger number is {max(a, b)}.", "compare"
        if q not in seen:  # pack drops duplicate instructions; keep the set free of them
            seen.add(q)
            rows.append(_row(len(rows), q, answer, family))
    rng.shuffle(rows)
    return rows
