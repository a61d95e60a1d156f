"""A GBNF grammar of one protocol assistant turn, generated from the protocol module.

The turn is ``{phrase}\\n<tool_call>\\n{json}\\n</tool_call>`` exactly as
``protocol.text.assistant_text`` writes it. Each tool's call is rendered by
``protocol.text.tool_call_text`` with sentinel arguments (the action classes' own
``arguments()``), and the sentinels are replaced by grammar rules: coordinates are integers
0..GRID_MAX without leading zeros, enums (``point_type``) one of the schema's values. The phrase
is 1..PHRASE_MAX characters without ``<`` or a newline: bounded, so a phrase (<= 64 tokens) and
the longest call (~45 tokens, one per digit) always fit the 128-token budget; an unbounded
``+`` lets a bad model ramble until the budget cuts the call off (and is slower in llama.cpp's
grammar sampler on random multi-byte text), a longer bound deepens its stacks. llama.cpp allows an end-of-generation
token (``<|im_end|>``) once the grammar is complete, so every constrained turn parses.
"""

from __future__ import annotations

import json
import re

from medsam_agent_rt.protocol import AddBox, AddPoint, Stop
from medsam_agent_rt.protocol.text import GRID_MAX, TOOL_NAMES, TOOL_SCHEMAS, tool_call_text

PHRASE_MAX = 64
_SENTINEL = 987_654_300  # + k: never a real coordinate


def _literal(text: str) -> str:
    """A GBNF string literal."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"'


def _int_rule(maximum: int) -> str:
    """Decimal integers 0..maximum (no leading zeros), as GBNF alternatives."""
    digits = len(str(maximum))
    if maximum != 10**digits - 1:
        raise ValueError(f"grid maximum must be all nines (9, 99, 999...), got {maximum}")
    alts = ['"0"'] + [f"[1-9]{' [0-9]' * k}" for k in range(digits)]
    return " | ".join(alts)


def _sample_calls() -> dict[str, dict]:
    s = _SENTINEL
    calls = {
        AddBox.name: AddBox(s + 1, s + 2, s + 3, s + 4).arguments(),
        AddPoint.name: AddPoint(s + 5, s + 6, True).arguments(),
        Stop.name: Stop().arguments(),
    }
    if set(calls) != set(TOOL_NAMES):
        raise RuntimeError(
            f"the protocol's tools {TOOL_NAMES} changed; update gguf_grammar ({sorted(calls)})"
        )
    return calls


def protocol_grammar(phrase_max: int = PHRASE_MAX) -> str:
    """The GBNF text (root rule ``root``)."""
    enums: dict[str, list[str]] = {}
    for tool in TOOL_SCHEMAS:
        for prop, schema in tool["function"]["parameters"]["properties"].items():
            if "enum" in schema:
                enums[prop] = list(schema["enum"])
    rules = [
        "root ::= phrase " + _literal("\n") + " call",
        f"phrase ::= [^<\\n]{{1,{int(phrase_max)}}}",
        "coord ::= " + _int_rule(GRID_MAX),
    ]
    slots = [str(_SENTINEL // 1000) + r"\d{3}"]
    slots += [re.escape(f": {json.dumps(v[0])}") for v in enums.values()]
    pattern = re.compile("|".join(slots))
    names = []
    for k, (name, args) in enumerate(_sample_calls().items()):
        text = tool_call_text(name, args)
        parts: list[str] = []
        pos = 0
        for m in pattern.finditer(text):
            parts.append(_literal(text[pos : m.start()]))
            token = m.group(0)
            if token.startswith(": "):
                prop = next(p for p, v in enums.items() if token == f": {json.dumps(v[0])}")
                parts += [_literal(": "), f"enum-{prop.replace('_', '-')}"]
            else:
                parts.append("coord")
            pos = m.end()
        parts.append(_literal(text[pos:]))
        rule = f"call{k}"
        names.append(rule)
        rules.append(f"{rule} ::= " + " ".join(p for p in parts if p != '""'))
    rules.insert(2, "call ::= " + " | ".join(names))
    for prop, values in enums.items():
        rules.append(
            f"enum-{prop.replace('_', '-')} ::= "
            + " | ".join(_literal(json.dumps(v)) for v in values)
        )
    return "\n".join(rules) + "\n"
