"""Render a chunk of truth into the rows of each system.

Every ``render_*`` function returns ``{table name: [row tuple, ...]}`` with values in the
column order of the table in :mod:`continuity.estate.schemas` or
:mod:`continuity.target_schema`. Quirk choices that only one system shows (a date's text
format, an abbreviation) come from the renderer's own random stream; anything another
renderer must agree on comes from :class:`~continuity.estate.index.ChunkIndex`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from continuity.domain.dates import london_to_utc
from continuity.domain.keys import target_key
from continuity.domain.names import strip_diacritics
from continuity.estate import vocab
from continuity.estate.index import (
    LEGACY,
    NFA_ADDR_REF,
    POLICEWORKS,
    ChunkIndex,
    addr_ref,
    canonical_lines,
)
from continuity.estate.truth import (
    AS_OF,
    GO_LIVE,
    Chunk,
    Crime,
    Place,
    Rng,
    Warning,
    legacy_crime_no,
    stable_fraction,
)

Rows = dict[str, list[tuple[Any, ...]]]
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
ROLE_LETTER = {"VICTIM": "V", "SUSPECT": "S", "OFFENDER": "O", "WITNESS": "W", "REPORTER": "R"}


def legacy_dob(day: dt.date, year_only: bool, rng: Rng) -> str:
    """DOB text: ``DD/MM/YY`` (always 19YY), ``DD-MON-YYYY``, or ``00/00/YYYY`` (year only)."""
    if year_only:
        return f"00/00/{day.year}"
    if day.year < 2000 and rng.random() < 0.6:
        return f"{day.day:02d}/{day.month:02d}/{day.year % 100:02d}"
    return f"{day.day:02d}-{MONTHS[day.month - 1]}-{day.year}"


def legacy_date(day: dt.date, rng: Rng) -> str:
    """Event date text: ``DD/MM/YY`` means 20YY below 70, else 19YY; or ``DD-MON-YYYY``."""
    if 1970 <= day.year < 2070 and rng.random() < 0.6:
        return f"{day.day:02d}/{day.month:02d}/{day.year % 100:02d}"
    return f"{day.day:02d}-{MONTHS[day.month - 1]}-{day.year}"


def legacy_datetime(value: dt.datetime, rng: Rng) -> str:
    return f"{legacy_date(value.date(), rng)} {value.hour:02d}:{value.minute:02d}"


def _address_lines(p: Place, rng: Rng) -> list[str | None]:
    """Five free-text lines, upper case, abbreviations and a postcode written any old way."""
    street = p.street
    if rng.random() < 0.3:
        name, kind = street.rsplit(" ", 1)
        street = f"{name} {vocab.STREET_ABBREVIATIONS[kind]}"
    lines: list[str | None] = []
    if p.building:
        lines.append(p.building.upper())
    lines.append(f"{p.number} {street}".upper())
    if p.locality:
        lines.append(p.locality.upper())
    lines.append(p.town.upper())
    roll = rng.random()
    if roll < 0.7:
        lines.append(p.postcode)
    elif roll < 0.8:
        lines.append(p.postcode.replace(" ", ""))
    elif roll < 0.9:
        lines.append(p.postcode.lower())
    # else: the postcode was never written down
    return lines + [None] * (5 - len(lines))


def render_legacy(chunk: Chunk, idx: ChunkIndex) -> Rows:
    rng = Rng(chunk.rng_seed + ":legacy")
    out: Rows = defaultdict(list)
    if chunk.index == 0:
        out["ADDRESS"].append((NFA_ADDR_REF, "NFA", None, None, None, None, None))
    for hi, h in enumerate(chunk.humans):
        for n, rec in enumerate(idx.legacy_all[hi]):
            warns = [w.code for w in h.warnings if w.active] if n == 0 else []
            warns += [""] * (4 - len(warns))
            pnc = h.pnc if (n == 0 or rng.random() < 0.5) else None
            if pnc is None and rng.random() < 0.15:
                pnc = "UNKNOWN"
            middle = rec.middle or ("UNKNOWN" if rng.random() < 0.05 else "")
            dob = legacy_dob(rec.dob, rec.dob_estimated, rng) if rec.dob else ""
            if rec.deleted:
                continue  # deleted at source since; its draws above keep the others' values
            out["NOMINAL"].append(
                (
                    rec.key,
                    rec.surname,
                    rec.forename,
                    middle,
                    h.gender,
                    dob,
                    pnc,
                    h.cro if n == 0 else None,
                    *warns,
                    h.handling or "",
                    addr_ref(h.home) if h.home is not None else NFA_ADDR_REF,
                )
            )
            if n == 0:
                for seq, (fn, sn) in enumerate(h.aliases, 1):
                    out["ALIAS"].append(
                        (rec.key, seq, strip_diacritics(sn).upper(), strip_diacritics(fn).upper())
                    )
    for pid in sorted(idx.legacy_places):
        p = idx.place[pid]
        marker = vocab.LEGACY_PREMISES_FIREARMS if p.firearms is not None else None
        out["ADDRESS"].append((addr_ref(pid), *_address_lines(p, rng), marker))
    for ci, c in enumerate(chunk.crimes):
        if not c.in_legacy:
            continue
        v = c.legacy_view
        status, oic, outcome, outcome_date, mo = (
            (v.status, v.oic, v.outcome, v.outcome_date, v.mo_text)
            if v
            else (c.status, c.oic, c.outcome, c.outcome_date, c.mo_text)
        )
        recorded = legacy_datetime(c.recorded, rng)
        if c.garbage == "unparseable recorded date":
            recorded = (
                rng.choice(("31/02/", "00/13/", "32/01/")) + f"{c.recorded.year % 100:02d} 00:00"
            )
        crime_no = legacy_crime_no(c)
        out["CRIME"].append(
            (
                crime_no,
                c.division,
                c.legacy_code,
                legacy_datetime(c.committed_from, rng),
                legacy_datetime(c.committed_to, rng) if c.committed_to else None,
                legacy_datetime(c.reported, rng),
                recorded,
                addr_ref(c.place),
                mo,
                status,
                oic if oic else ("UNKNOWN" if rng.random() < 0.5 else None),
                outcome or "",
                legacy_date(outcome_date, rng) if outcome_date else "",
                "Y" if c.domestic_abuse else "N",
                c.hate_strand or "",
                "Y" if c.child_protection else ("N" if rng.random() < 0.5 else ""),
                str(c.mopi_group),
                legacy_date(c.review_date, rng),
                "Y" if c.legal_hold else "N",
            )
        )
        for hi, role in c.links:
            out["CRIME_NOMINAL"].append((crime_no, idx.link_nominal[(ci, hi)], ROLE_LETTER[role]))
        if c.era == "legacy":
            for hi, conditions, return_date in c.bail:
                out["BAIL"].append(
                    (
                        crime_no,
                        idx.link_nominal[(ci, hi)],
                        conditions,
                        legacy_date(return_date, rng),
                    )
                )
    for ci, ghost, letter in idx.dangling:
        out["CRIME_NOMINAL"].append((legacy_crime_no(chunk.crimes[ci]), ghost, letter))
    return out


def render_policeworks(chunk: Chunk, idx: ChunkIndex, zero_dates: bool) -> Rows:
    unknown_date: Any = "0000-00-00" if zero_dates else None
    out: Rows = defaultdict(list)
    crimes = chunk.crimes
    for hi, h in enumerate(chunk.humans):
        if not idx.pw_records[hi]:
            continue
        home_id = idx.location_guid[h.home] if h.home is not None else None
        for n, rec in enumerate(idx.pw_records[hi]):
            assert rec.crime is not None  # every PoliceWorks record belongs to an occurrence
            c_index = rec.crime
            c = crimes[c_index]
            created = london_to_utc(max(c.recorded, GO_LIVE) if c.era == "both" else c.recorded)
            out["pw_person"].append(
                (
                    rec.key,
                    idx.occurrence_guid[c_index],
                    rec.forename,
                    rec.middle,
                    rec.surname,
                    rec.dob if rec.dob else unknown_date,
                    rec.dob_estimated,
                    h.gender,
                    h.pnc,
                    created,
                )
            )
            if home_id is not None:
                out["pw_link"].append(
                    (chunk.guid("home", rec.key), "PERSON", rec.key, "LOCATION", home_id, "HOME")
                )
            if n == 0:
                for w in h.warnings:
                    out["pw_warning"].append(
                        (
                            chunk.guid("warning", hi, w.code),
                            "PERSON",
                            rec.key,
                            vocab.WARNING_CODES[w.code][1],
                            w.start,
                            w.review,
                            w.end,
                            w.restricted,
                        )
                    )
    for pid in sorted(idx.pw_places):
        p = idx.place[pid]
        # Decided per place (not from the chunk's stream), so that a place PoliceWorks comes to
        # hold after the estate evolves leaves every other place as it was.
        has_uprn = p.uprn is not None and stable_fraction(chunk.rng_seed, "uprn", pid) < 0.75
        out["pw_location"].append(
            (
                idx.location_guid[pid],
                p.uprn if has_uprn else None,
                p.building,
                f"{p.number} {p.street}",
                p.locality or None,
                p.town,
                p.postcode,
                p.easting if has_uprn else None,
                p.northing if has_uprn else None,
            )
        )
        if p.firearms is not None:
            w = p.firearms
            out["pw_warning"].append(
                (
                    chunk.guid("warning-location", pid),
                    "LOCATION",
                    idx.location_guid[pid],
                    vocab.PW_LOCATION_FIREARMS,
                    w.start,
                    w.review,
                    w.end,
                    w.restricted,
                )
            )
    for ci, c in enumerate(crimes):
        if not c.in_policeworks:
            continue
        occ = idx.occurrence_guid[ci]
        loaded = c.era == "both"
        out["pw_occurrence"].append(
            (
                occ,
                c.reference,
                legacy_crime_no(c) if loaded else None,
                None if loaded else f"INC-{c.recorded:%Y%m%d}-{c.cid % 10000:04d}",
                "LEGACY_LOAD" if loaded else "PW",
                c.offence.ho_code,
                c.offence.vendor_class,
                vocab.counting_rules_version(c.recorded.year),
                london_to_utc(c.committed_from),
                london_to_utc(c.committed_to) if c.committed_to else None,
                london_to_utc(c.reported),
                london_to_utc(c.recorded),
                idx.location_guid[c.place],
                c.mo_text,
                c.status,
                c.oic,
                c.outcome,
                c.outcome_date or unknown_date,
                c.domestic_abuse,
                c.hate_strand,
                c.child_protection,
                c.division,
                c.mopi_group,
                c.review_date,
                c.legal_hold,
            )
        )
        for hi, role in c.links:
            person = idx.pw_person_of[(ci, hi)]
            out["pw_link"].append(
                (chunk.guid("link", ci, hi, role), "OCCURRENCE", occ, "PERSON", person, role)
            )
        for hi, conditions, return_date in c.bail:
            out["pw_bail"].append(
                (
                    chunk.guid("bail", ci, hi),
                    idx.pw_person_of[(ci, hi)],
                    occ,
                    conditions,
                    return_date,
                )
            )
        for hi, agency, status, referred in c.referrals:
            out["pw_safeguarding"].append(
                (
                    chunk.guid("referral", ci, hi),
                    idx.pw_person_of[(ci, hi)],
                    occ,
                    agency,
                    status,
                    london_to_utc(referred),
                )
            )
    for intel in chunk.intel:
        out["pw_intel"].append(
            (
                chunk.guid("intel", intel.iid),
                idx.pw_first(intel.human),
                intel.grading,
                intel.created,
                intel.review_state,
                intel.summary,
            )
        )
    return out


def crime_disposition(c: Crime) -> tuple[str, str | None]:
    """Where a crime must end up: MIGRATED, EXCLUDED (MoPI) or REJECTED (quarantine)."""
    if c.garbage:
        return "REJECTED", c.garbage
    if c.mopi_excluded:
        return "EXCLUDED", "MoPI group 3 review date passed, closed, no legal hold"
    return "MIGRATED", None


def _warning_rows(
    out: Rows,
    keys: tuple[str, str | None, str | None],
    subject: tuple[str, str | None, str | None],
    w: Warning,
    legacy_table: str,
    group: int,
) -> None:
    """Target row and crosswalk rows of one warning marker on a person or a location.

    PoliceWorks holds the dates and the restriction; a warning only the legacy system holds
    (a WARNn column, a premises marker) arrives with none.
    """
    wk, legacy_key, pw_key = keys
    if pw_key is not None:
        out["warning_marker"].append(
            (wk, *subject, w.code, w.start, w.review, w.end, w.restricted, group, w.review)
        )
        rule = "merge:same_warning" if legacy_key else "anchor"
        out["migration_crosswalk"].append(
            (POLICEWORKS, "pw_warning", pw_key, "warning_marker", wk, rule, None)
        )
    else:
        out["warning_marker"].append((wk, *subject, w.code, None, None, None, False, group, None))
    if legacy_key is not None:
        out["migration_crosswalk"].append(
            (LEGACY, legacy_table, legacy_key, "warning_marker", wk, "anchor", None)
        )


def render_ideal(chunk: Chunk, idx: ChunkIndex) -> Rows:
    """The product's tables exactly as a perfect migration leaves them, with the crosswalk."""
    out: Rows = defaultdict(list)
    crimes = chunk.crimes
    xw = out["migration_crosswalk"]
    person_mopi: dict[int, tuple[int, dt.date]] = {}
    for c in crimes:
        for hi, _ in c.links:
            g, r = person_mopi.get(hi, (9, dt.date.min))
            person_mopi[hi] = (min(g, c.mopi_group), max(r, c.review_date))
    for hi, h in enumerate(chunk.humans):
        pk = idx.person_key[hi]
        lrecs, precs = idx.legacy_records[hi], idx.pw_records[hi]
        records = lrecs + precs
        anchor = records[0]
        group, review = person_mopi[hi]
        # A perfect migration can only show what some record holds: the anchor's spelling (a
        # legacy anchor is the truth upper-cased) and the first date of birth any record gives.
        forename, surname = (
            (anchor.forename, anchor.surname)
            if anchor.system == POLICEWORKS
            else (h.forename, h.surname)
        )
        dated = next((r for r in records if r.dob is not None), None)
        dob, dob_estimated = (dated.dob, dated.dob_estimated) if dated else (None, False)
        out["person"].append(
            (
                pk,
                forename,
                h.middle,
                surname,
                dob,
                dob_estimated,
                h.gender,
                h.handling if lrecs else None,  # only the legacy HANDLING column holds it
                "MIGRATION",
                group,
                review,
            )
        )
        names = [("PRIMARY", forename, surname, anchor.system)]
        seen = {(forename.casefold(), surname.casefold())}
        for fn, sn in h.aliases if lrecs else ():  # only the legacy ALIAS table holds aliases
            if (fn.casefold(), sn.casefold()) not in seen:
                seen.add((fn.casefold(), sn.casefold()))
                names.append(("ALIAS", fn, sn, LEGACY if lrecs else POLICEWORKS))
        for rec in records:
            key = (rec.forename.casefold(), rec.surname.casefold())
            if key not in seen:
                seen.add(key)
                names.append(("VARIANT", rec.forename, rec.surname, rec.system))
        for seq, (kind, fn, sn, system) in enumerate(names, 1):
            out["person_name"].append((pk, seq, kind, fn, sn, system))
        dobs: dict[dt.date, tuple[bool, str]] = {}
        for rec in records:
            if rec.dob is not None and rec.dob != dob and rec.dob not in dobs:
                dobs[rec.dob] = (rec.dob_estimated, rec.system)
        for dob, (estimated, system) in dobs.items():
            out["person_dob"].append((pk, dob, estimated, system))
        if h.pnc:
            out["person_identifier"].append((pk, "PNC", h.pnc))
        if h.cro and lrecs:
            out["person_identifier"].append((pk, "CRO", h.cro))
        if h.home is not None:
            out["person_location"].append((pk, idx.location_key[h.home], "HOME"))
        for rec in records:
            rule = "anchor" if rec is anchor else "merge:same_human"
            xw.append(
                (rec.system, rec.table, rec.key, "person", pk, rule, None if rec is anchor else 100)
            )
        for rec in idx.legacy_all[hi]:
            if rec.deleted:  # a duplicate deleted at source: its person stays, with the others
                out["migration_deletion"].append(
                    (rec.system, rec.table, rec.key, "person", pk, "merge:same_human", "kept", None)
                )
        for w in h.warnings:
            keys = idx.person_warning(hi, w)
            if keys is None:
                continue  # an ended warning only the legacy system knew of: nobody holds it
            _warning_rows(
                out, keys, ("PERSON", pk, None), w, "NOMINAL.WARN", group=1 if w.code == "FI" else 2
            )

    for pid in sorted(idx.location_key):
        p = idx.place[pid]
        lk = idx.location_key[pid]
        matched = p.uprn is not None
        out["location"].append(
            (
                lk,
                p.uprn,
                "MATCHED" if matched else "UNMATCHED",
                *canonical_lines(p),
                p.postcode,
                p.easting if matched else None,
                p.northing if matched else None,
                None,
                None,
            )
        )
        in_legacy = pid in idx.legacy_places
        if in_legacy:
            xw.append((LEGACY, "ADDRESS", addr_ref(pid), "location", lk, "anchor", None))
        if pid in idx.pw_places:
            xw.append(
                (
                    POLICEWORKS,
                    "pw_location",
                    idx.location_guid[pid],
                    "location",
                    lk,
                    "merge:same_place" if in_legacy else "anchor",
                    None,
                )
            )
        if p.firearms is not None:
            keys = idx.location_warning(pid)
            _warning_rows(
                out, keys, ("LOCATION", None, lk), p.firearms, "ADDRESS.PREMISES_MARKER", group=1
            )

    for ci, c in enumerate(crimes):
        disposition, _ = crime_disposition(c)
        if disposition != "MIGRATED":
            continue
        ek = idx.event_key[ci]
        out["event"].append(
            (
                ek,
                c.reference,
                None if c.in_legacy else f"INC-{c.recorded:%Y%m%d}-{c.cid % 10000:04d}",
                c.offence.ho_code,
                vocab.counting_rules_version(c.recorded.year),
                london_to_utc(c.committed_from),
                london_to_utc(c.committed_to) if c.committed_to else None,
                london_to_utc(c.reported),
                london_to_utc(c.recorded),
                idx.location_key[c.place],
                c.mo_text,
                c.status,
                c.oic,
                c.outcome,
                c.outcome_date,
                c.domestic_abuse,
                c.hate_strand,
                c.child_protection,
                c.division,
                c.mopi_group,
                c.review_date,
            )
        )
        if c.in_legacy:
            xw.append((LEGACY, "CRIME", legacy_crime_no(c), "event", ek, "anchor", None))
        if c.in_policeworks:
            xw.append(
                (
                    POLICEWORKS,
                    "pw_occurrence",
                    idx.occurrence_guid[ci],
                    "event",
                    ek,
                    "precedence:policeworks" if c.in_legacy else "anchor",
                    None,
                )
            )
        for hi, role in c.links:
            out["event_person"].append((ek, idx.person_key[hi], role))
        for hi, conditions, return_date in c.bail:
            if c.in_policeworks:
                bid = chunk.guid("bail", ci, hi)
                bk = target_key("bail", POLICEWORKS, bid)
                xw.append((POLICEWORKS, "pw_bail", bid, "bail", bk, "anchor", None))
            else:
                lkey = f"{legacy_crime_no(c)}|{idx.link_nominal[(ci, hi)]}"
                bk = target_key("bail", LEGACY, lkey)
                xw.append((LEGACY, "BAIL", lkey, "bail", bk, "anchor", None))
            out["bail"].append(
                (bk, idx.person_key[hi], ek, conditions, return_date, c.mopi_group, c.review_date)
            )
        for hi, agency, status, referred in c.referrals:
            rid = chunk.guid("referral", ci, hi)
            rk = target_key("safeguarding_referral", POLICEWORKS, rid)
            out["safeguarding_referral"].append(
                (
                    rk,
                    idx.person_key[hi],
                    ek,
                    agency,
                    status,
                    london_to_utc(referred),
                    2,
                    c.review_date,
                )
            )
            xw.append(
                (POLICEWORKS, "pw_safeguarding", rid, "safeguarding_referral", rk, "anchor", None)
            )
    for intel in chunk.intel:
        iid = chunk.guid("intel", intel.iid)
        ik = target_key("intelligence_report", POLICEWORKS, iid)
        review = (intel.created + dt.timedelta(days=6 * 365)).date()
        out["intelligence_report"].append(
            (
                ik,
                idx.person_key[intel.human],
                intel.grading,
                intel.created,
                intel.review_state,
                intel.summary,
                2,
                review,
            )
        )
        xw.append((POLICEWORKS, "pw_intel", iid, "intelligence_report", ik, "anchor", None))
    out["migration_quarantine"] += quarantine_rows(chunk, idx)
    out["migration_exclusion"] += [
        (system, table, key, f"{rule}: {reason}")
        for system, table, key, rule, disposition, reason in exclusion_rows(chunk, idx)
        if disposition == "EXCLUDED"
    ]
    if chunk.index == 0:
        for o in vocab.OFFENCES:
            out["ref_offence_code"].append(
                (o.ho_code, o.description, vocab.counting_rules_version(AS_OF.year))
            )
        for n, (fn, sn) in enumerate(
            (("Training", "User"), ("Pilot", "Record"), ("Test", "Subject")), 1
        ):
            pk = target_key("person", "pilot", str(n))
            out["person"].append((pk, fn, None, sn, None, False, "U", None, "PILOT", None, None))
            out["person_name"].append((pk, 1, "PRIMARY", fn, sn, "pilot"))
    return out


def render_gazetteer(chunk: Chunk) -> list[tuple[Any, ...]]:
    """AddressBase-like rows: every place with a UPRN, plus addresses nobody lives at."""
    rows = []
    for p in [*chunk.places, *chunk.gazetteer_extra]:
        if p.uprn is not None:
            rows.append(
                (
                    p.uprn,
                    p.building or "",
                    p.number,
                    p.street,
                    p.locality,
                    p.town,
                    p.postcode,
                    p.easting,
                    p.northing,
                )
            )
    return rows


def render_truth(chunk: Chunk, idx: ChunkIndex) -> Rows:
    """Ground-truth rows of one chunk (tables of ``schemas.truth``)."""
    out: Rows = defaultdict(list)
    crimes = chunk.crimes
    for hi, h in enumerate(chunk.humans):
        out["human"].append(
            (
                h.hid,
                h.forename,
                h.middle,
                h.surname,
                h.gender,
                h.dob,
                h.dob_year_only,
                h.pnc,
                idx.person_key[hi],
            )
        )
        for rec in idx.legacy_records[hi] + idx.pw_records[hi]:
            out["person_record"].append(
                (
                    rec.system,
                    rec.table,
                    rec.key,
                    h.hid,
                    rec.forename,
                    rec.surname,
                    rec.dob,
                    rec.variant,
                )
            )
        for w in h.warnings:
            keys = idx.person_warning(hi, w)
            if w.code == "FI" and keys is not None:
                out["firearms"].append(
                    ("PERSON", h.hid, keys[0], idx.person_key[hi], keys[1], keys[2], w.active)
                )
    for kind, a, b in chunk.pairs:
        out["hard_pair"].append((kind, chunk.humans[a].hid, chunk.humans[b].hid))
    for pid in sorted(idx.location_key):
        p = idx.place[pid]
        if p.firearms is not None:
            wk, legacy_key, pw_key = idx.location_warning(pid)
            out["firearms"].append(
                ("LOCATION", pid, wk, idx.location_key[pid], legacy_key, pw_key, p.firearms.active)
            )
    if chunk.index == 0:
        out["exclusion"].append(
            (
                LEGACY,
                "ADDRESS",
                NFA_ADDR_REF,
                "placeholder_address",
                "EXCLUDED",
                "NFA (no fixed abode) placeholder, not a place",
            )
        )
    for ci, c in enumerate(crimes):
        disposition, reason = crime_disposition(c)
        legacy_key = legacy_crime_no(c) if c.in_legacy else None
        pw_key = idx.occurrence_guid[ci] if c.in_policeworks else None
        migrated = disposition == "MIGRATED"
        out["crime"].append(
            (
                c.reference,
                c.era,
                legacy_key,
                pw_key,
                idx.event_key[ci] if migrated else None,
                disposition,
                reason,
                c.recorded.year,
                c.offence.ho_code,
            )
        )
        for hi, role in c.links:
            if role == "VICTIM":
                out["crime_victim"].append(
                    (
                        c.reference,
                        chunk.humans[hi].hid,
                        idx.event_key[ci] if migrated else None,
                        idx.person_key[hi],
                    )
                )
    out["exclusion"] += exclusion_rows(chunk, idx)
    out["quarantine"] += quarantine_rows(chunk, idx)
    return out


def exclusion_rows(chunk: Chunk, idx: ChunkIndex) -> list[tuple[str, str, str, str, str, str]]:
    """Source records a MoPI rule disposes of, or would but for a legal hold:
    (system, table, key, rule, EXCLUDED or RETAINED_LEGAL_HOLD, reason)."""
    out: list[tuple[str, str, str, str, str, str]] = []
    for ci, c in enumerate(chunk.crimes):
        disposition, reason = crime_disposition(c)
        legacy_key = legacy_crime_no(c) if c.in_legacy else None
        pw_key = idx.occurrence_guid[ci] if c.in_policeworks else None
        link_keys = [
            (
                LEGACY,
                "CRIME_NOMINAL",
                f"{legacy_key}|{idx.link_nominal[(ci, hi)]}|{ROLE_LETTER[role]}",
            )
            for hi, role in c.links
            if legacy_key
        ]
        link_keys += [
            (POLICEWORKS, "pw_link", chunk.guid("link", ci, hi, role))
            for hi, role in c.links
            if pw_key
        ]
        if disposition == "EXCLUDED":
            for system, table, key in (
                (LEGACY, "CRIME", legacy_key),
                (POLICEWORKS, "pw_occurrence", pw_key),
            ):
                if key:
                    out.append((system, table, key, "mopi_disposal", "EXCLUDED", reason or ""))
            children = link_keys + [
                (POLICEWORKS, "pw_safeguarding", chunk.guid("referral", ci, hi))
                for hi, *_ in c.referrals
            ]
            for system, table, key in children:
                out.append(
                    (system, table, key, "mopi_disposal", "EXCLUDED", "parent crime excluded")
                )
        elif disposition == "REJECTED":
            pass  # quarantined (quarantine_rows): what cannot be read is not judged for disposal
        elif c.legal_hold:  # due for disposal, kept by the hold
            for system, table, key in (
                (LEGACY, "CRIME", legacy_key),
                (POLICEWORKS, "pw_occurrence", pw_key),
            ):
                if key:
                    out.append(
                        (
                            system,
                            table,
                            key,
                            "mopi_disposal",
                            "RETAINED_LEGAL_HOLD",
                            "due for disposal but under a legal hold",
                        )
                    )
    return out


def quarantine_rows(chunk: Chunk, idx: ChunkIndex) -> list[tuple[str, str, str, str]]:
    """Source records a perfect migration quarantines: (system, table, key, reason).

    Quarantine wins over MoPI: what cannot be read cannot be held, nor judged for disposal.
    """
    out: list[tuple[str, str, str, str]] = []
    for ci, c in enumerate(chunk.crimes):
        disposition, reason = crime_disposition(c)
        if disposition != "REJECTED":
            continue
        crime_no = legacy_crime_no(c)
        out.append((LEGACY, "CRIME", crime_no, f"{reason}"))
        for hi, role in c.links:
            out.append(
                (
                    LEGACY,
                    "CRIME_NOMINAL",
                    f"{crime_no}|{idx.link_nominal[(ci, hi)]}|{ROLE_LETTER[role]}",
                    f"parent crime rejected: {reason}",
                )
            )
        for hi, _, _ in c.bail:
            out.append(
                (
                    LEGACY,
                    "BAIL",
                    f"{crime_no}|{idx.link_nominal[(ci, hi)]}",
                    f"parent crime rejected: {reason}",
                )
            )
    for ci, ghost, letter in idx.dangling:
        out.append(
            (
                LEGACY,
                "CRIME_NOMINAL",
                f"{legacy_crime_no(chunk.crimes[ci])}|{ghost}|{letter}",
                f"dangling link: nominal {ghost} does not exist",
            )
        )
    return out
