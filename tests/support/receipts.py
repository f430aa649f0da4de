"""The synthetic receipt task shared by the optimizer, flow and reliability tests.

The student reads dates month-first unless its system prompt says "day-first"; the reflector
answers a question about the date field with exactly that rule. So an optimizer that finds the
rule scores 1.0, and the seed scores about 2/3: a small, checkable target for optimizer logic.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ieflow.datasets import Example

SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": ["string", "null"], "description": "Company name."},
        "date": {"type": ["string", "null"], "format": "date", "description": "Receipt date."},
        "total": {"type": ["number", "null"], "description": "Total paid."},
    },
    "required": ["company", "date", "total"],
}
SHOPS = ["Acme Hardware", "Bright Books", "Corner Cafe", "Delta Foods", "Echo Pharmacy", "Fern Florist"]
DAY_FIRST_RULE = "Dates are printed day-first (DD/MM/YYYY); write them as YYYY-MM-DD."
OTHER_RULE = "Copy the value exactly as printed."


def make_examples(n: int, offset: int = 0) -> list[Example]:
    out = []
    for i in range(n):
        day, month = 1 + (i + offset) % 12, 1 + (i + offset + 5) % 12
        shop = f"{SHOPS[(i + offset) % len(SHOPS)]} {i + offset}"
        text = f"{shop}\nDate: {day:02d}/{month:02d}/2021\nTOTAL: {10 + i}.50"
        gold = {"company": shop, "date": f"2021-{month:02d}-{day:02d}", "total": 10 + i + 0.5}
        out.append(Example(doc_id=f"d{i + offset}", text=text, gold=gold))
    return out


def student_answer(messages: list[dict]) -> str:
    """The student's JSON answer: dates read the wrong way round unless told "day-first"."""
    document = next(m["content"] for m in reversed(messages) if m["content"].startswith("Document:"))
    company = document.splitlines()[1]
    day, month = re.search(r"(\d\d)/(\d\d)/2021", document).groups()
    total = float(re.search(r"TOTAL: ([\d.]+)", document).group(1))
    date = f"2021-{month}-{day}" if "day-first" in messages[0]["content"] else f"2021-{day}-{month}"
    return json.dumps({"company": company, "date": date, "total": total})


def reflector_answer(messages: list[dict]) -> str:
    return DAY_FIRST_RULE if '"date"' in messages[-1]["content"] else OTHER_RULE


def fake_models(body: dict[str, Any]) -> str:
    """Both models for the fake server (model "reflector" or the student; module level: picklable)."""
    if body["model"] == "reflector":
        return reflector_answer(body["messages"])
    return student_answer(body["messages"])
