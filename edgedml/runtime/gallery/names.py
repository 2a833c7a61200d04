"""Identity names: one spelling per visible name, nothing that can forge a line or hide.

A name is what a guard reads on the door's screen and what ``revoke`` is typed with, so two
names that look the same must be one identity, and a name must not be able to print anything
but itself. :func:`identity_name` is the one gate every gallery call that takes a name passes:

- Unicode NFC: "Zoë" typed as one code point or as "e" + combining diaeresis is one identity;
- refused: control characters (a newline would print a forged ``ACCEPTED: admin`` line), format
  characters (zero-width joiners, bidi overrides), unassigned, private-use and surrogate code
  points, line and paragraph separators, spaces other than the plain space, other characters
  that render as nothing (Unicode's default-ignorable code points, the Hangul and Braille
  blanks), leading, trailing or doubled spaces, and names over :data:`MAX_NAME_LENGTH` characters.

Messages show a refused name escaped (``\\n``, ``\\u200d``), never its raw characters.
"""

from __future__ import annotations

import unicodedata

from .store import GalleryError

MAX_NAME_LENGTH = 256
SHOWN_LENGTH = 40  # characters of a refused name shown in its message
REFUSED_CATEGORIES = {
    "Cc": "a control character", "Cf": "an invisible format character", "Cn": "an unassigned code point",
    "Co": "a private-use character", "Cs": "a surrogate", "Zl": "a line separator", "Zp": "a paragraph separator",
}
# default-ignorable code points (Unicode DerivedCoreProperties) outside the Cf category, and
# blanks that render as nothing: each would make two names that look the same
INVISIBLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0,
             *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def identity_name(raw: object) -> str:
    """The identity's name in its one stored spelling (NFC), or a GalleryError saying what in
    ``raw`` is refused."""
    if not isinstance(raw, str):
        raise GalleryError(f"an identity's name must be text, got {type(raw).__name__}")
    name = unicodedata.normalize("NFC", raw)
    if not name:
        raise GalleryError("an identity needs a non-empty name")
    if len(name) > MAX_NAME_LENGTH:
        raise GalleryError(f"the name {shown(name)} has {len(name)} characters; names have at most "
                           f"{MAX_NAME_LENGTH}: choose a shorter one")
    for position, char in enumerate(name, 1):
        problem = _refused(char)
        if problem:
            code = f"U+{ord(char):04X} {unicodedata.name(char, '')}".strip()
            raise GalleryError(f"the name {shown(name)} holds {problem} ({code}) at character {position}; "
                               f"names are letters, marks, digits, punctuation, symbols and single plain spaces: "
                               f"choose another name")
    if not name.strip(" "):
        raise GalleryError(f"the name {shown(name)} is only spaces; give the identity a visible name")
    if "  " in name:
        raise GalleryError(f"the name {shown(name)} holds two spaces in a row, so it looks like another name; "
                           f"separate its words with one space")
    if name != name.strip(" "):
        raise GalleryError(f"the name {shown(name)} starts or ends with a space, so it looks like another name; "
                           f"remove the leading and trailing spaces")
    return name


def _refused(char: str) -> str | None:
    category = unicodedata.category(char)
    if category in REFUSED_CATEGORIES:
        return REFUSED_CATEGORIES[category]
    if category == "Zs" and char != " ":
        return "a space other than the plain space"
    if ord(char) in INVISIBLE:
        return "a character that renders as nothing"
    return None


def shown(name: str) -> str:
    """``name`` quoted for a message: :func:`escaped` (quotes escaped too), at most
    :data:`SHOWN_LENGTH` characters then "…"."""
    return f"'{escaped(name[:SHOWN_LENGTH]).replace(chr(39), chr(92) + chr(39))}'" + (
        "…" if len(name) > SHOWN_LENGTH else "")


def escaped(name: str) -> str:
    """``name`` as one line of text: refused and unprintable characters escaped (``\\n``,
    ``\\u200d``), and backslashes doubled, so what is shown is what was stored."""
    return "".join("\\\\" if char == "\\" else char if char.isprintable() and not _refused(char) else _escape(char)
                   for char in name)


def _escape(char: str) -> str:
    text = repr(char)[1:-1]
    if text != char:  # \n, \t, \x00, \u200d, \U000e0100
        return text
    code = ord(char)  # printable to Python, refused here (a Hangul filler)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
