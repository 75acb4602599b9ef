"""A small English -> German grammar with real word reordering, for lmscope's demo T5.

Every sentence comes with a word alignment: for each German word, the index of the English
word it translates, or None (a German comma has no English counterpart). Reordering that makes
cross-attention worth watching:

- verb-final subordinate clauses: "... because the man opens the door" -> "..., weil der Mann
  die Tür aufmacht"
- separable verbs: "the man opens the door" -> "der Mann macht die Tür auf"
- participles and infinitives at the end: "the dog has seen the cat" -> "der Hund hat die
  Katze gesehen"; "wants to see" -> "will ... sehen"
- verb-second after a fronted adverb: "today the dog sees the cat" -> "heute sieht der Hund ..."
- dative before accusative: "gives the book to the child" -> "gibt dem Kind das Buch"

Articles and adjectives inflect for gender and case (nominative, accusative, dative). Words are
lists of strings; "," is a word of its own. Only singular, third person, so the lexicon stays
small enough for a word-level vocabulary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

PREFIX = ["translate", "English", "to", "German", ":"]
"""T5-style task prefix; the demo is trained with and without it, so both work."""

# English noun -> (German noun, gender). Categories decide which verbs may take them as objects.
ANIMATE = {
    "dog": ("Hund", "m"), "cat": ("Katze", "f"), "man": ("Mann", "m"), "woman": ("Frau", "f"),
    "child": ("Kind", "n"), "girl": ("Mädchen", "n"), "teacher": ("Lehrer", "m"),
    "doctor": ("Ärztin", "f"), "friend": ("Freund", "m"), "bird": ("Vogel", "m"),
    "horse": ("Pferd", "n"), "mouse": ("Maus", "f"), "king": ("König", "m"),
    "queen": ("Königin", "f"), "cook": ("Koch", "m"), "sister": ("Schwester", "f"),
    "brother": ("Bruder", "m"), "mother": ("Mutter", "f"), "father": ("Vater", "m"),
    "baby": ("Baby", "n"),
}
OPENABLE = {
    "door": ("Tür", "f"), "window": ("Fenster", "n"), "box": ("Kiste", "f"),
    "book": ("Buch", "n"), "bag": ("Tasche", "f"), "letter": ("Brief", "m"),
}
THING = {
    "ball": ("Ball", "m"), "key": ("Schlüssel", "m"), "cup": ("Tasse", "f"),
    "chair": ("Stuhl", "m"), "picture": ("Bild", "n"), "table": ("Tisch", "m"),
    "hat": ("Hut", "m"), "flower": ("Blume", "f"), **OPENABLE,
}
FOOD = {
    "apple": ("Apfel", "m"), "cake": ("Kuchen", "m"), "bread": ("Brot", "n"),
    "soup": ("Suppe", "f"), "pear": ("Birne", "f"), "egg": ("Ei", "n"),
}
READABLE = {
    "book": ("Buch", "n"), "letter": ("Brief", "m"), "story": ("Geschichte", "f"),
    "newspaper": ("Zeitung", "f"),
}
DEVICE = {
    "lamp": ("Lampe", "f"), "radio": ("Radio", "n"), "computer": ("Computer", "m"),
    "light": ("Licht", "n"),
}
ANY = {**ANIMATE, **THING, **FOOD, **READABLE, **DEVICE}

ADJECTIVES = {
    "big": "groß", "small": "klein", "old": "alt", "young": "jung", "red": "rot", "new": "neu",
    "beautiful": "schön", "tired": "müde", "hungry": "hungrig", "green": "grün",
}
PEOPLE_ADJ = sorted(["big", "small", "old", "young", "beautiful", "tired", "hungry"])
THING_ADJ = sorted(["big", "small", "old", "new", "red", "green", "beautiful"])
# Determiner -> (German stem, is an ein-word). Ein-words take strong adjective endings where
# they themselves have none ("ein großer Hund", but "der große Hund").
DETERMINERS = {
    "the": ("d", False), "a": ("ein", True), "my": ("mein", True), "your": ("dein", True),
}
DET_WEIGHTS = {"the": 6, "a": 3, "my": 1, "your": 1}
DEFINITE = {
    ("nom", "m"): "der", ("nom", "f"): "die", ("nom", "n"): "das",
    ("acc", "m"): "den", ("acc", "f"): "die", ("acc", "n"): "das",
    ("dat", "m"): "dem", ("dat", "f"): "der", ("dat", "n"): "dem",
}
EIN_ENDING = {
    ("nom", "m"): "", ("nom", "f"): "e", ("nom", "n"): "",
    ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "",
    ("dat", "m"): "em", ("dat", "f"): "er", ("dat", "n"): "em",
}
STRONG_ADJ = {("nom", "m"): "er", ("nom", "n"): "es", ("acc", "n"): "es"}


@dataclass(frozen=True)
class Verb:
    """One verb in all the forms the grammar needs.

    English forms are word lists because phrasal verbs ("picks up") take two words. German
    `particle` is the separable prefix ("auf" in "macht ... auf"); `infinitive` and
    `participle` already include it ("aufmachen", "aufgemacht").
    """

    en_3sg: tuple[str, ...]
    en_base: tuple[str, ...]
    en_participle: tuple[str, ...]
    de_3sg: str
    infinitive: str
    participle: str
    objects: dict | None = None
    particle: str = ""
    aux: str = "hat"
    case: str = "acc"
    ditransitive: bool = False


def _v(en: str, de: str, objects=None, **kw) -> Verb:
    """Builds a Verb from "sees see seen" and "sieht sehen gesehen" (phrasal: "picks_up")."""
    en3, enb, enp = (tuple(w.split("_")) for w in en.split())
    de3, inf, part = de.split()
    return Verb(en3, enb, enp, de3, inf, part, objects, **kw)


TRANSITIVE = [
    _v("sees see seen", "sieht sehen gesehen", ANY),
    _v("likes like liked", "mag mögen gemocht", ANY),
    _v("finds find found", "findet finden gefunden", ANY),
    _v("hears hear heard", "hört hören gehört", {**ANIMATE, "story": ("Geschichte", "f")}),
    _v("eats eat eaten", "isst essen gegessen", FOOD),
    _v("reads read read", "liest lesen gelesen", READABLE),
    _v("buys buy bought", "kauft kaufen gekauft", {**THING, **FOOD}),
    _v("carries carry carried", "trägt tragen getragen", {**THING, **ANIMATE}),
    _v("paints paint painted", "malt malen gemalt", ANY),
    _v("visits visit visited", "besucht besuchen besucht", ANIMATE),
    _v("helps help helped", "hilft helfen geholfen", ANIMATE, case="dat"),
    _v("follows follow followed", "folgt folgen gefolgt", ANIMATE, case="dat", aux="ist"),
    _v("opens open opened", "macht aufmachen aufgemacht", OPENABLE, particle="auf"),
    _v("closes close closed", "macht zumachen zugemacht", OPENABLE, particle="zu"),
    _v("calls call called", "ruft anrufen angerufen", ANIMATE, particle="an"),
    _v("picks_up pick_up picked_up", "hebt aufheben aufgehoben", THING, particle="auf"),
    _v("switches_on switch_on switched_on", "macht anmachen angemacht", DEVICE, particle="an"),
    _v("gives give given", "gibt geben gegeben", {**THING, **FOOD}, ditransitive=True),
    _v("shows show shown", "zeigt zeigen gezeigt", {**THING, **READABLE}, ditransitive=True),
    _v("brings bring brought", "bringt bringen gebracht", {**THING, **FOOD}, ditransitive=True),
]
INTRANSITIVE = [
    _v("sleeps sleep slept", "schläft schlafen geschlafen"),
    _v("laughs laugh laughed", "lacht lachen gelacht"),
    _v("sings sing sung", "singt singen gesungen"),
    _v("waits wait waited", "wartet warten gewartet"),
    _v("runs run run", "läuft laufen gelaufen", aux="ist"),
    _v("plays play played", "spielt spielen gespielt"),
    _v("works work worked", "arbeitet arbeiten gearbeitet"),
]
SAYING = [  # main clauses that take a "that" clause
    _v("says say said", "sagt sagen gesagt"),
    _v("thinks think thought", "denkt denken gedacht"),
    _v("knows know known", "weiß wissen gewusst"),
    _v("hopes hope hoped", "hofft hoffen gehofft"),
]
MODALS = {  # English modal, its "to" if any, German modal
    "wants": ("wants", "to", "will"), "can": ("can", None, "kann"), "must": ("must", None, "muss"),
}
ADVERBS = {"today": "heute", "now": "jetzt", "tomorrow": "morgen", "sometimes": "manchmal"}
CONJUNCTIONS = {"because": "weil", "although": "obwohl", "while": "während", "when": "wenn"}

Aligned = list[tuple[str, "int | None"]]
"""German words, each with the index of its English word (or None)."""


class Sentence:
    """Builds one English/German pair while keeping the alignment.

    English words are appended in English order and each call returns their indices; German
    words are appended in German order with the index of the English word they translate.
    """

    def __init__(self) -> None:
        self.en: list[str] = []
        self.de: Aligned = []

    def en_words(self, words) -> list[int]:
        """Appends English words; returns their indices."""
        start = len(self.en)
        self.en.extend(words)
        return list(range(start, start + len(words)))


def noun_phrase(rng: random.Random, nouns: dict, s: Sentence) -> Callable[[str], Aligned]:
    """Adds an English noun phrase; returns a function case -> its aligned German words."""
    det = rng.choices(list(DET_WEIGHTS), weights=list(DET_WEIGHTS.values()))[0]
    noun = rng.choice(sorted(nouns))
    adj = rng.choice(PEOPLE_ADJ if noun in ANIMATE else THING_ADJ) if rng.random() < 0.3 else None
    en = [det] + ([adj] if adj else []) + [noun]
    if det == "a" and en[1][0] in "aeiou":
        en[0] = "an"
    idx = s.en_words(en)
    de_noun, gender = nouns[noun]

    def german(case: str) -> Aligned:
        stem, ein = DETERMINERS[det]
        article = stem + EIN_ENDING[case, gender] if ein else DEFINITE[case, gender]
        words = [(article, idx[0])]
        if adj:
            ending = STRONG_ADJ.get((case, gender), "e") if ein else "e"
            ending = "en" if case == "dat" or (case, gender) == ("acc", "m") else ending
            stem_adj = ADJECTIVES[adj]
            words.append((stem_adj + (ending[1:] if stem_adj.endswith("e") else ending), idx[1]))
        return words + [(de_noun, idx[-1])]

    return german


def clause(rng: random.Random, s: Sentence, subordinate: bool, verbs: list[Verb]) -> None:
    """Adds one clause: English SVO order, German V2 (main) or verb-final (subordinate)."""
    adverb = None
    if not subordinate and rng.random() < 0.25:
        adverb = rng.choice(sorted(ADVERBS))
        adv_idx = s.en_words([adverb])[0]
    subject = noun_phrase(rng, ANIMATE, s)
    verb = rng.choice(verbs)
    tense = rng.choices(["present", "perfect", "modal"], weights=[5, 3, 2])[0]
    finite, rest = verb_words(rng, verb, tense, s)
    objects: Aligned = []
    if verb.objects is not None:
        obj = noun_phrase(rng, verb.objects, s)
        objects = obj(verb.case)
        if verb.ditransitive:
            s.en_words(["to"])  # German marks the recipient by case alone
            objects = noun_phrase(rng, ANIMATE, s)("dat") + objects
    if subordinate:
        if tense == "present" and verb.particle:  # "aufmacht": particle and verb fuse
            finite, rest = (verb.particle + finite[0], finite[1]), []
        s.de += subject("nom") + objects + rest + [finite]
    elif adverb:
        s.de += [(ADVERBS[adverb], adv_idx), finite] + subject("nom") + objects + rest
    else:
        s.de += subject("nom") + [finite] + objects + rest


def verb_words(rng: random.Random, verb: Verb, tense: str, s: Sentence):
    """Adds the English verb group; returns German (finite verb, words that go last)."""
    if tense == "present":
        idx = s.en_words(verb.en_3sg)
        rest = [(verb.particle, idx[-1])] if verb.particle else []
        return (verb.de_3sg, idx[0]), rest
    if tense == "perfect":
        idx = s.en_words(["has", *verb.en_participle])
        return (verb.aux, idx[0]), [(verb.participle, idx[1])]
    en_modal, to, de_modal = MODALS[rng.choice(sorted(MODALS))]
    idx = s.en_words([en_modal] + ([to] if to else []) + list(verb.en_base))
    return (de_modal, idx[0]), [(verb.infinitive, idx[2 if to else 1])]


def sentence(rng: random.Random, prefix: bool) -> dict:
    """Draws one pair: {"en": words, "de": words, "align": de index -> en index or None}."""
    s = Sentence()
    if prefix:
        s.en_words(PREFIX)
    kind = rng.choices(["simple", "because", "that"], weights=[5, 3, 2])[0]
    if kind == "simple":
        clause(rng, s, False, TRANSITIVE * 2 + INTRANSITIVE)
    elif kind == "because":
        clause(rng, s, False, TRANSITIVE + INTRANSITIVE)
        conj = rng.choice(sorted(CONJUNCTIONS))
        s.de += [(",", None), (CONJUNCTIONS[conj], s.en_words([conj])[0])]
        clause(rng, s, True, TRANSITIVE + INTRANSITIVE)
    else:
        subject = noun_phrase(rng, ANIMATE, s)
        verb = rng.choice(SAYING)
        s.de += subject("nom") + [(verb.de_3sg, s.en_words(verb.en_3sg)[0])]
        s.de += [(",", None), ("dass", s.en_words(["that"])[0])]
        clause(rng, s, True, TRANSITIVE + INTRANSITIVE)
    return {"en": s.en, "de": [w for w, _ in s.de], "align": [i for _, i in s.de]}


def detokenize(words: list[str]) -> str:
    """Joins words with spaces, but none before "," or ":"."""
    return "".join(w if w in {",", ":"} or i == 0 else " " + w for i, w in enumerate(words))


def pairs(seed: int, n: int, exclude: frozenset = frozenset(), prefix_rate: float = 0.5):
    """Returns n distinct pairs drawn from `seed`, none whose English text is in `exclude`.

    Distinctness and `exclude` compare the sentence without its prefix, so a held-out sentence
    never appears in training with or without the prefix.
    """
    rng, seen, out = random.Random(seed), set(exclude), []
    while len(out) < n:
        pair = sentence(rng, prefix=rng.random() < prefix_rate)
        key = bare(pair["en"])
        if key not in seen:
            seen.add(key)
            out.append(pair)
    return out


def bare(en: list[str]) -> str:
    """The English text without the task prefix: the key for held-out disjointness."""
    return detokenize(en[len(PREFIX):] if en[: len(PREFIX)] == PREFIX else en)


if __name__ == "__main__":
    for p in pairs(0, 12):
        print(detokenize(p["en"]), "->", detokenize(p["de"]))
        print("   ", [(w, None if i is None else p["en"][i]) for w, i in zip(p["de"], p["align"])])
