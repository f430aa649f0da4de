"""Make unstructured 0.27.35 partition offline.

On first use unstructured downloads the spaCy model `en_core_web_sm` from GitHub (it is not on
PyPI); offline, `partition_html/docx/text` then raise. We replace its private model loader
(`unstructured.nlp.tokenize._get_nlp`) with a blank English pipeline: a rule-based sentencizer plus
a tiny verb tagger. unstructured only asks spaCy for tokens, sentences and verb tags (its
"is this narrative text?" test looks for a verb), so a blank pipeline without the tagger would
classify every paragraph as a title. This touches a private API: the version is pinned in
pyproject.toml, and `apply()` fails loudly if the hook moves.
"""

from __future__ import annotations

import re
import threading

_lock = threading.Lock()
_applied = False

# Common verbs and auxiliaries of business and legal prose; enough for a "contains a verb" test.
_VERB_WORDS = """
    is are was were be been being am has have had do does did will shall would should can could may
    might must agree agrees agreed provide provides provided include includes included make makes
    made pay pays paid receive receives received disclose discloses disclosed use uses used keep
    keeps kept return returns returned terminate terminates terminated remain remains remained
    become becomes became give gives gave given take takes took taken get gets got see sees saw
    know knows knew need needs want wants says said go goes went come comes came hold holds held
    mean means meant set sets apply applies applied require requires required constitute
    constitutes deliver delivers delivered sign signs signed enter enters entered execute
    executes executed acknowledge acknowledges acknowledged represent represents represented
    warrant warrants warranted contain contains contained consist consists
"""
_VERBS = frozenset(_VERB_WORDS.split())
_VERB_SUFFIX = re.compile(r"^[a-z]{3,}(?:ed|ing|izes?|ises?|ized|ised)$")


def _tag_verbs(doc):  # type: ignore[no-untyped-def]
    for token in doc:
        lower = token.lower_
        if lower in _VERBS or _VERB_SUFFIX.match(lower):
            token.tag_ = "VB"
    return doc


def build_nlp():  # type: ignore[no-untyped-def]
    """A blank English spaCy pipeline: sentencizer + heuristic verb tagger. No downloads."""
    import spacy
    from spacy.language import Language

    if "ieflow_verb_tagger" not in Language.factories:
        Language.component("ieflow_verb_tagger", func=_tag_verbs)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("ieflow_verb_tagger")
    return nlp


def apply() -> None:
    """Swap unstructured's spaCy model loader for the offline pipeline (idempotent, thread-safe)."""
    global _applied
    if _applied:
        return
    with _lock:
        if _applied:
            return
        import unstructured.nlp.tokenize as tokenize

        if not hasattr(tokenize, "_get_nlp"):
            raise RuntimeError(
                "unstructured.nlp.tokenize._get_nlp is gone: the offline spaCy swap needs updating "
                "for this unstructured version"
            )
        nlp = build_nlp()
        tokenize._get_nlp = lambda: nlp
        _applied = True
