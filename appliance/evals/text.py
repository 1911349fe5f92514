"""Plain-text helpers of the evaluators: sentences, words, numbers, names, language,
repetition, refusals and JSON. No model: these are the cheap signals."""

from __future__ import annotations

import json
import re
from collections import Counter

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+\s*(?:[-*•]\s+|\d+[.)]\s+)?")
_WORD = re.compile(r"[^\W_]+(?:['’.,-][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?=st\b|nd\b|rd\b|th\b|[^\w]|$)")
_NUMBER_WORDS = frozenset({
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"})
_NAME = re.compile(r"\b(?:[A-Z][a-zA-Z]+|[A-Z]{2,}[a-z]?)\b")
_ENGLISH = frozenset({
    "the", "a", "an", "of", "to", "in", "and", "or", "is", "are", "was", "were", "be", "been",
    "it", "this", "that", "for", "on", "with", "as", "by", "at", "from", "not", "no", "can",
    "you", "your", "we", "our", "they", "their", "he", "she", "his", "her", "its", "if", "than",
    "then", "there", "what", "which", "who", "how", "when", "where", "why", "do", "does", "did",
    "have", "has", "had", "will", "would", "should", "may", "must", "up", "out", "all", "any",
    "each", "only", "also", "into", "about", "after", "before", "per"})
# Frequent function words of other languages written in Latin script.
_FOREIGN = frozenset({
    "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "ich", "sie", "wir", "mit",
    "von", "zu", "den", "dem", "für", "auf", "le", "la", "les", "et", "est", "une", "des", "du",
    "pour", "pas", "que", "qui", "dans", "sur", "avec", "el", "los", "las", "y", "es", "una",
    "por", "para", "con", "como", "pero", "del", "il", "che", "di", "non", "sono", "della",
    "gli", "het", "een", "en", "van", "niet", "zijn", "dat", "met", "voor", "o",
    "os", "da", "do", "não", "em", "um", "uma", "com"})
# Capitalised words that are not names when they start a clause or are everyday words.
_NOT_NAMES = frozenset({
    "The", "A", "An", "It", "This", "That", "These", "Those", "In", "On", "At", "For", "From",
    "To", "Of", "And", "Or", "But", "If", "When", "Where", "Yes", "No", "Please", "Thank",
    "Thanks", "You", "Your", "We", "Our", "They", "He", "She", "Each", "Every", "All", "Any",
    "Some", "Most", "After", "Before", "During", "Per", "New", "Open", "I", "I'm"})
REFUSALS = re.compile(
    r"\b(?:i(?:'m| am) (?:sorry|afraid|unable|not able)|i can(?:'|no)?t (?:help|assist|"
    r"answer|provide|share|do that|comply)|i cannot (?:help|assist|answer|provide|share|"
    r"comply)|i (?:won't|will not|must decline|have to decline|decline)|unable to (?:help|"
    r"assist|comply)|(?:not|n't) (?:allowed|permitted|able) to (?:help|answer|share|discuss)|"
    r"as an ai\b|against (?:my|our) (?:policy|guidelines)|can(?:'|no)?t help with)",
    re.IGNORECASE)
_JSON_ASKED = re.compile(r"\bjson\b", re.IGNORECASE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """Sentences and list items, each with at least one word."""
    parts = (p.strip(" \t-*•") for p in _SENTENCE_END.split(text.strip()))
    return [p for p in parts if p and _WORD.search(p)]


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def numbers(text: str) -> set[str]:
    """Numbers as written (thousands separators removed: 1,200 -> 1200; 25th -> 25) and
    number words from two to twenty ("one" is as often a pronoun)."""
    found = {n.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", n) else n
             for n in _NUMBER.findall(text)}
    return found | {w for w in words(text) if w in _NUMBER_WORDS}


def names(text: str) -> set[str]:
    """Capitalised words and acronyms that are likely names: not a sentence's first
    word (unless an acronym), not an everyday capitalised word."""
    out: set[str] = set()
    for sentence in sentences(text):
        for m in _NAME.finditer(sentence):
            first = not sentence[:m.start()].strip(" \"'(")
            if m.group() not in _NOT_NAMES and (not first or m.group().isupper()):
                out.add(m.group())
    return out


def english(text: str) -> bool | None:
    """True or False when the text says clearly, None when too short to tell."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 12 and sum(not c.isascii() for c in letters) > 0.3 * len(letters):
        return False  # another script
    ws = words(text)
    if len(ws) < 4:
        return None
    ours = sum(w in _ENGLISH for w in ws)
    theirs = sum(w in _FOREIGN for w in ws)
    if theirs > ours:
        return False
    return True if ours else None


def repetition(text: str, n: int = 3) -> float:
    """Share of repeated word n-grams and of repeated sentences, whichever is larger
    (0: nothing repeats; towards 1: the answer is mostly repeats)."""
    ws = words(text)
    grams = [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)]
    gram_share = 1 - len(set(grams)) / len(grams) if grams else 0.0
    sents = [" ".join(words(s)) for s in sentences(text)]
    sent_share = 1 - len(set(sents)) / len(sents) if sents else 0.0
    return max(gram_share, sent_share)


def degenerate_ending(text: str) -> float:
    """How badly the answer ends: 1 for a token loop or a cut word, 0.5 for no closing
    punctuation on prose, 0 for a clean end."""
    stripped = text.rstrip()
    ws = words(stripped[-200:])
    if len(ws) >= 4 and len(set(ws[-4:])) == 1:
        return 1.0  # "the the the the"
    tail = Counter(ws[-12:])
    if len(ws) >= 12 and tail.most_common(1)[0][1] >= 6:
        return 1.0
    if stripped.endswith(("...", "…")) or stripped[-1:] in ",;:-(":
        return 0.5
    if stripped[-1:].isalpha() and len(sentences(stripped)) > 1 and "\n" not in stripped[-80:]:
        return 0.5  # prose that stops mid-sentence
    return 0.0


def refused(text: str) -> bool:
    return bool(REFUSALS.search(text[:400]))


def json_asked(prompt: str) -> bool:
    return bool(_JSON_ASKED.search(prompt))


def valid_json(text: str) -> bool:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        json.loads(body)
    except ValueError:
        return False
    return body[:1] in "{["
