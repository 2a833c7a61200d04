"""The command line's argument forms: the old ones kept for one release, and the readings refused.

Each old form is rewritten into the current one before click parses it, with a one-line
deprecation notice on stderr:

- ``verify GALLERY IMG NAME`` → ``verify GALLERY NAME IMG``;
- ``calibrate BUNDLE`` and ``build-engine BUNDLE`` → ``--model BUNDLE``;
- ``revoke … --model BUNDLE`` (and ``--precision``, ``--detector``): accepted and ignored,
  since a revocation needs no bundle (see ``gallery.revoke``).

verify tells NAME from IMG by which of the two is an existing file. When both are files (a file
named like the identity lies here) or neither is, the line reads two ways or none, and it is
refused (exit 2) rather than guessed: a door must never verify the wrong identity because an
argument was misread. For the same reason ``enroll`` refuses a NAME that is an existing file.

Imports neither torch nor onnx (the device commands use it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click


class FormError(click.ClickException):
    """An argument line that cannot be read one way: one line (``Error: …``), exit 2."""

    exit_code = 2


def deprecated(old: str, new: str, why: str = "the old form goes in the next release") -> None:
    """The one-line notice an old form prints on stderr before the command runs."""
    click.echo(f"edgedml: deprecated: {old!r}; use {new!r} ({why})", err=True)


def positionals(command: click.Command, args: list[str]) -> list[int]:
    """Where the positional arguments lie in ``args``: tokens that are neither options nor an
    option's value (an unknown option is taken for a flag; click refuses it afterwards)."""
    takes_value = {name for p in command.params if isinstance(p, click.Option) and not p.is_flag and not p.count
                   for name in p.opts + p.secondary_opts}
    found, skip = [], False
    for i, token in enumerate(args):
        if skip:
            skip = False
        elif token == "--":
            return found + list(range(i + 1, len(args)))
        elif token.startswith("-") and len(token) > 1:
            skip = token in takes_value  # --model B (not --model=B)
        else:
            found.append(i)
    return found


def is_file(text: str) -> bool:
    """Whether ``text`` names an existing file; a string no file can have (too long, a NUL) does not."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


class Rewritten(click.Command):
    """A command whose old argument forms ``rewrite(command, args)`` turns into the current one
    (printing the notice) or refuses (:class:`FormError`) before click parses them; ``--help``
    is never rewritten."""

    def __init__(self, *args, rewrite: Callable[[click.Command, list[str]], list[str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.rewrite = rewrite

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not set(args) & set(ctx.help_option_names):
            args = self.rewrite(self, list(args))
        return super().parse_args(ctx, args)


def verify_order(command: click.Command, args: list[str]) -> list[str]:
    """``verify GALLERY NAME IMG``; the old ``GALLERY IMG NAME`` with a notice; both or neither a
    file: refused."""
    where = positionals(command, args)
    if len(where) != 3:  # click says what is missing or extra
        return args
    first, second = (args[i] for i in where[1:])
    first_file, second_file = is_file(first), is_file(second)
    if second_file and not first_file:
        return args
    if first_file and not second_file:
        deprecated("verify GALLERY IMG NAME", "verify GALLERY NAME IMG", "the old order goes in the next release")
        args[where[1]], args[where[2]] = second, first
        return args
    if first_file:
        raise FormError(f"verify: {first!r} and {second!r} are both files, so either could be the image and the "
                        f"other the name; verify takes GALLERY NAME IMG and will not guess: move or rename the file "
                        f"named like the identity, or run it from another folder")
    raise FormError(f"verify takes GALLERY NAME IMG, and neither {first!r} nor {second!r} is an existing image "
                    f"file: check the image's path")


def enroll_name(command: click.Command, args: list[str]) -> list[str]:
    """``enroll GALLERY NAME IMG…``: a NAME that is an existing file reads as an image, not a name."""
    where = positionals(command, args)
    if len(where) >= 3 and is_file(args[where[1]]):
        name = args[where[1]]
        raise FormError(f"enroll takes GALLERY NAME IMG…, and {name!r} is a file, so it reads as an image, not a "
                        f"name: put the identity's name before the images (a name spelled like a file here is "
                        f"refused; run it from another folder)")
    return args


def bundle_option(command: click.Command, args: list[str]) -> list[str]:
    """``COMMAND --model BUNDLE``; the old ``COMMAND BUNDLE`` with a notice."""
    where = positionals(command, args)
    given = any(a == "--model" or a.startswith("--model=") for a in args)
    if len(where) != 1 or given:  # click says what is missing or extra
        return args
    deprecated(f"{command.name} BUNDLE", f"{command.name} --model BUNDLE")
    bundle = args.pop(where[0])
    return ["--model", bundle, *args]


def revoke_options(bundle: str | None, precision: str | None, detector: str | None) -> None:
    """The notice for the options an old ``revoke`` line passed: accepted, and ignored."""
    given = [(name, metavar) for name, metavar, value in (("--model", "BUNDLE", bundle),
                                                          ("--precision", "PRECISION", precision),
                                                          ("--detector", "SPEC", detector)) if value is not None]
    if given:
        old = " ".join(f"{name} {metavar}" for name, metavar in given)
        names = " and ".join(name for name, _ in given)
        deprecated(f"revoke GALLERY NAME {old}", "revoke GALLERY NAME",
                   f"a revocation needs no bundle: {names} {'is' if len(given) == 1 else 'are'} ignored, and the "
                   f"option{'' if len(given) == 1 else 's'} go{'es' if len(given) == 1 else ''} in the next release")
