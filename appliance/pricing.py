"""Which price applies to a model name, from the `prices` setting.

Model names in spans are often dated or provider-qualified variants of a list
name (``gpt-4o-2024-08-06``, ``openai/gpt-4o-mini``), so a name matches its key
exactly, or as ``KEY-…``/``KEY:…``/``KEY@…`` with the longest key winning (so
``gpt-4o-mini-2024-07-18`` is ``gpt-4o-mini``, not ``gpt-4o``). A model nothing
matches is *unpriced*: callers report its tokens and no cost, never a zero.
"""

from __future__ import annotations

from collections.abc import Mapping

from appliance.settings import Price

_SEPARATORS = ("-", ":", "@")


def resolve(model: str | None, prices: Mapping[str, Price]) -> tuple[str, Price] | None:
    """(matched key, price) for a model name, or None when it is unpriced."""
    if not model:
        return None
    lowered = {k.lower(): k for k in prices}
    names = [model.lower()]
    if "/" in model:  # provider-qualified: openai/gpt-4o
        names.append(model.rsplit("/", 1)[1].lower())
    for name in names:
        if name in lowered:
            return lowered[name], prices[lowered[name]]
        candidates = [k for k in lowered
                      if name.startswith(k) and name[len(k):len(k) + 1] in _SEPARATORS]
        if candidates:
            key = lowered[max(candidates, key=len)]
            return key, prices[key]
    return None


def cost(input_tokens: int, output_tokens: int, price: Price) -> float:
    return (input_tokens * price.input_per_million
            + output_tokens * price.output_per_million) / 1_000_000
