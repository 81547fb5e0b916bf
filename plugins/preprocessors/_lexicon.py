"""The built-in English lexicon of the ``safety`` step: common profanity and insults.

Deliberately short and mild, a baseline rather than a moderation system: it holds no
slurs. Add the words your data needs with ``lexicon`` or ``lexicon_files``. Entries are
lower case; a multi-word entry matches that exact sequence of words.
"""

WORDS = frozenset({
    "arse", "arsehole", "ass", "asshole", "bastard", "bitch", "bollocks", "bullshit",
    "crap", "crappy", "damn", "dammit", "dickhead", "dumbass", "fuck", "fucked", "fucker",
    "fucking", "goddamn", "idiot", "imbecile", "jackass", "moron", "piss", "pissed",
    "scumbag", "shit", "shitty", "stfu", "wanker", "wtf",
    "go to hell", "kill yourself", "shut up", "piece of shit",
})
