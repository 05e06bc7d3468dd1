"""The operations of the mapping language: each a builder that returns a plain function.

A field is a chain: a *head* that produces a value from the source row (``from``, ``const``,
``concat``, ``coalesce``, ``ref``) followed by *steps* that transform it (``trim``,
``parse_date``, ``code`` …). Builders run once, when a mapping is compiled; the functions they
return run once per record, so they do no parsing of their arguments and pure ones are memoised.

A value that cannot be carried raises :class:`Reject` with the reason; the record is then
quarantined with that reason, never dropped and never loaded half-converted. Nothing is
``eval``\\ ed: every operation is a named function with checked arguments.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from continuity.domain.names import strip_diacritics

Step = Callable[[Any], Any]
Head = Callable[[tuple[Any, ...]], Any]


class Reject(Exception):
    """A value (hence its record) cannot be migrated; the message is the quarantine reason."""


class ArgumentProblem(ValueError):
    """An operation's arguments are wrong; the mapping loader names file, line and key."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- steps -----------------------------------------------------------------------------------


def _trim(args: Any) -> Step:
    def trim(v: Any) -> Any:
        if isinstance(v, str):
            v = " ".join(v.split())
            return v or None
        return v

    return trim


def _case(args: Any) -> Step:
    if args not in ("upper", "lower", "title"):
        raise ArgumentProblem("case is one of upper, lower, title")
    if args == "title":
        return _title
    method = str.upper if args == "upper" else str.lower

    def case(v: Any) -> Any:
        return method(v) if isinstance(v, str) else v

    return case


# McDonald, McCann: after "Mc" a capital always follows. "Mac" is left alone: MACHIN is Machin.
_MAC = re.compile(r"\b(Mc)([a-z])")
_APOSTROPHE = re.compile(r"\b([OD])['’]([a-z])")


@lru_cache(maxsize=65536)
def _title_text(text: str) -> str:
    """Title case that keeps the shape of British names: O'Brien, McDonald, Smith-Jones."""
    out = text.lower().title()
    out = _APOSTROPHE.sub(lambda m: f"{m.group(1)}'{m.group(2).upper()}", out)
    return _MAC.sub(lambda m: m.group(1) + m.group(2).upper(), out)


def _title(v: Any) -> Any:
    return _title_text(v) if isinstance(v, str) else v


def _null_if(args: Any) -> Step:
    values = args if isinstance(args, list) else [args]
    nulls = frozenset(str(v) for v in values)

    def null_if(v: Any) -> Any:
        if v is None:
            return None
        return None if (v.strip() if isinstance(v, str) else str(v)) in nulls else v

    return null_if


def _default(args: Any) -> Step:
    def default(v: Any) -> Any:
        return args if v is None else v

    return default


def _required(args: Any) -> Step:
    reason = args if isinstance(args, str) else "a value is required"

    def required(v: Any) -> Any:
        if v is None:
            raise Reject(reason)
        return v

    return required


def _integer(args: Any) -> Step:
    def integer(v: Any) -> Any:
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        try:
            return int(str(v).strip())
        except ValueError:
            raise Reject(f"not a whole number: {_show(v)}") from None

    return integer


def _boolean(args: Any) -> Step:
    spec = args if isinstance(args, dict) else {}
    # YAML reads an unquoted `true:` key as the boolean True: accept either spelling.
    given: dict[Any, Any] = dict(spec)
    trues: list[Any] = given.get("true", given.get(True, ["Y", "YES", "TRUE", "1", "T"]))
    falses: list[Any] = given.get("false", given.get(False, ["N", "NO", "FALSE", "0", "F"]))
    truthy = frozenset(str(v).upper() for v in trues)
    falsy = frozenset(str(v).upper() for v in falses)
    if truthy & falsy:
        raise ArgumentProblem(f"values both true and false: {sorted(truthy & falsy)}")

    def boolean(v: Any) -> Any:
        if v is None or isinstance(v, bool):
            return v
        text = str(v).strip().upper()
        if text in truthy:
            return True
        if text in falsy:
            return False
        raise Reject(f"not a yes/no value: {_show(v)}")

    return boolean


def _text(args: Any) -> Step:
    def text(v: Any) -> Any:
        return None if v is None else str(v)

    return text


def _max_length(args: Any) -> Step:
    if not isinstance(args, int) or isinstance(args, bool) or args < 1:
        raise ArgumentProblem("max_length is a positive whole number")

    def max_length(v: Any) -> Any:
        if isinstance(v, str) and len(v) > args:
            # Never cut: a truncated MO text or address is a loss the target would hide.
            raise Reject(f"longer than {args} characters ({len(v)})")
        return v

    return max_length


def _pattern(args: Any) -> Step:
    spec = args if isinstance(args, dict) else {"regex": args}
    try:
        regex = re.compile(str(spec["regex"]))
    except (KeyError, re.error) as exc:
        raise ArgumentProblem(f"pattern needs a valid regex: {exc}") from None
    reason = spec.get("reason", f"does not match {regex.pattern}")

    def pattern(v: Any) -> Any:
        if v is not None and not regex.fullmatch(str(v)):
            raise Reject(f"{reason}: {_show(v)}")
        return v

    return pattern


def _split(args: Any) -> Step:
    if not isinstance(args, dict) or "index" not in args:
        raise ArgumentProblem("split needs {sep: TEXT, index: N}")
    sep, index = args.get("sep"), args["index"]
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise ArgumentProblem("split sep is a non-empty text (or absent: any whitespace)")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ArgumentProblem("split index is a whole number (negative counts from the end)")

    def split(v: Any) -> Any:
        if v is None:
            return None
        parts = str(v).split(sep)
        try:
            return parts[index].strip() or None
        except IndexError:
            return None

    return split


def _map(args: Any) -> Step:
    if not isinstance(args, dict) or not isinstance(args.get("values"), dict):
        raise ArgumentProblem("map needs {values: {FROM: TO, ...}}")
    unmapped = args.get("unmapped", "reject")
    return lookup_step(
        {str(k): v for k, v in args["values"].items()},
        "null" if unmapped is None else unmapped,  # YAML's bare null
        frozenset(str(v) for v in args.get("excluded", [])),
        "map",
    )


def lookup_step(
    table: Mapping[str, Any], unmapped: str, excluded: frozenset[str], label: str
) -> Step:
    """Translate codes through ``table``; an unmapped code rejects the record (or is kept).

    ``excluded`` codes are known and deliberately carried as null: every distinct value of a
    coded field is either mapped or explicitly excluded.
    """
    if unmapped not in ("reject", "keep", "null"):
        raise ArgumentProblem("unmapped is one of reject, keep, null")

    def lookup(v: Any) -> Any:
        if v is None:
            return None
        key = v.strip() if isinstance(v, str) else str(v)
        try:
            return table[key]
        except KeyError:
            pass
        if key in excluded or unmapped == "null":
            return None
        if unmapped == "keep":
            return v
        raise Reject(f"unmapped code {key!r} ({label})")

    return lookup


def _name(args: Any) -> Step:
    """A name as the product shows it: spacing tidied, upper-case legacy names title-cased."""

    def name(v: Any) -> Any:
        if not isinstance(v, str):
            return v
        v = " ".join(v.split())
        if not v:
            return None
        return _title_text(v) if v.isupper() else v

    return name


def _ascii_fold(args: Any) -> Step:
    def ascii_fold(v: Any) -> Any:
        return strip_diacritics(v) if isinstance(v, str) else v

    return ascii_fold


def _attr(args: Any) -> Step:
    if not isinstance(args, str):
        raise ArgumentProblem("attr names one attribute (attr: uprn)")

    def attr(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, Mapping):
            return v.get(args)
        return getattr(v, args, None)

    return attr


def _bands(args: Any) -> Step:
    """The label of the band a number falls in: ``{1998: HOCR1998, 2002: NCRS2002}``."""
    if not isinstance(args, dict) or not args:
        raise ArgumentProblem("bands maps lower bounds to labels ({1998: HOCR1998, ...})")
    try:
        bands = sorted((float(k), v) for k, v in args.items())
    except (TypeError, ValueError):
        raise ArgumentProblem("bands' lower bounds are numbers") from None

    def band(v: Any) -> Any:
        if v is None:
            return None
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise Reject(f"not a number: {_show(v)}") from None
        label = bands[0][1]  # below the first bound: the first band
        for bound, name in bands:
            if x >= bound:
                label = name
        return label

    return band


def _choose(args: Any) -> Step:
    """One value when there is a value, another when there is none."""
    if not isinstance(args, dict) or set(args) - {"present", "absent"} or not args:
        raise ArgumentProblem("choose takes {present: VALUE, absent: VALUE}")
    present, absent = args.get("present"), args.get("absent")

    def choose(v: Any) -> Any:
        return absent if v is None else present

    return choose


def _name_key(args: Any) -> Step:
    """A name as resolution compares it (``continuity.domain.names.name_key``)."""
    from continuity.domain.names import name_key

    def key(v: Any) -> Any:
        return name_key(v) if isinstance(v, str) else v

    return key


def _keep_if(args: Any) -> Step:
    """The value when it equals ``args``, else null (a flag that gates a resolution rule)."""

    def keep_if(v: Any) -> Any:
        return v if v == args else None

    return keep_if


STEPS: dict[str, Callable[[Any], Step]] = {
    "name_key": _name_key,
    "keep_if": _keep_if,
    "choose": _choose,
    "bands": _bands,
    "attr": _attr,
    "trim": _trim,
    "case": _case,
    "null_if": _null_if,
    "default": _default,
    "required": _required,
    "integer": _integer,
    "boolean": _boolean,
    "text": _text,
    "max_length": _max_length,
    "pattern": _pattern,
    "split": _split,
    "map": _map,
    "name": _name,
    "ascii_fold": _ascii_fold,
}
"""Steps taking no context. ``code``, ``parse_date``, ``parse_datetime`` and ``postcode`` are
built by the compiler (they need code tables or the domain's parsers)."""

#: Steps that may be written bare (``- trim``), without arguments.
BARE = frozenset(
    {"trim", "required", "integer", "boolean", "text", "name", "ascii_fold", "name_key"}
)


def chain(head: Head, steps: Sequence[Step]) -> Head:
    """One function: the head, then each step in turn."""
    if not steps:
        return head
    if len(steps) == 1:
        (s,) = steps

        def one(row: tuple[Any, ...]) -> Any:
            return s(head(row))

        return one

    def run(row: tuple[Any, ...]) -> Any:
        v = head(row)
        for s in steps:
            v = s(v)
        return v

    return run
