"""Schemas of the estate's two source systems and of its ground-truth file.

The legacy crime system is an old design: upper-case table and column names, every date as text,
warnings in fixed columns. PoliceWorks is newer: GUID keys, UTC timestamps, a generic link table.

Neither declares key constraints, as many production legacy databases do not: a record's key is
*declared* (:data:`KEYS`, and later in an extractor's spec), indexed for lookups, and checked by
whoever reads it, never assumed unique because the database said so.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

GUID = String(36)

legacy = MetaData()

Table(
    "NOMINAL",
    legacy,
    Column("NOMINAL_REF", String(10)),
    Column("SURNAME", String(60)),
    Column("FORENAME1", String(40)),
    Column("FORENAME2", String(40)),
    Column("SEX", String(1)),
    Column("DOB", String(11)),
    Column("PNC_ID", String(20)),
    Column("CRO_NO", String(20)),
    Column("WARN1", String(2)),
    Column("WARN2", String(2)),
    Column("WARN3", String(2)),
    Column("WARN4", String(2)),
    Column("HANDLING", String(12)),
    Column("ADDR_REF", String(10)),
)
Table(
    "ALIAS",
    legacy,
    Column("NOMINAL_REF", String(10)),
    Column("SEQ", Integer),
    Column("SURNAME", String(60)),
    Column("FORENAME", String(40)),
)
Table(
    "ADDRESS",
    legacy,
    Column("ADDR_REF", String(10)),
    Column("LINE1", String(60)),
    Column("LINE2", String(60)),
    Column("LINE3", String(60)),
    Column("LINE4", String(60)),
    Column("LINE5", String(60)),
    Column("PREMISES_MARKER", String(4)),
)
Table(
    "CRIME",
    legacy,
    Column("CRIME_NO", String(16)),
    Column("DIVISION", Integer),
    Column("OFFENCE_CODE", String(8)),
    Column("COMMITTED_FROM", String(17)),
    Column("COMMITTED_TO", String(17)),
    Column("REPORTED", String(17)),
    Column("RECORDED", String(17)),
    Column("ADDR_REF", String(10)),
    Column("MO_TEXT", Text),
    Column("STATUS", String(8)),
    Column("OIC", String(12)),
    Column("OUTCOME", String(6)),
    Column("OUTCOME_DATE", String(11)),
    Column("DA_FLAG", String(1)),
    Column("HATE_STRAND", String(20)),
    Column("CP_FLAG", String(1)),
    Column("MOPI_GROUP", String(1)),
    Column("REVIEW_DATE", String(11)),
    Column("LEGAL_HOLD", String(1)),
)
Table(
    "CRIME_NOMINAL",
    legacy,
    Column("CRIME_NO", String(16)),
    Column("NOMINAL_REF", String(10)),
    Column("ROLE", String(1)),
)
Table(
    "BAIL",
    legacy,
    Column("CRIME_NO", String(16)),
    Column("NOMINAL_REF", String(10)),
    Column("CONDITIONS", String(120)),
    Column("RETURN_DATE", String(11)),
)

policeworks = MetaData()

Table(
    "pw_person",
    policeworks,
    Column("person_id", GUID),
    Column("occurrence_id", GUID),
    Column("forename", String(60)),
    Column("middle_names", String(60)),
    Column("surname", String(60)),
    Column("dob", Date),
    Column("dob_estimated", Boolean),
    Column("gender", String(1)),
    Column("pnc_id", String(20)),
    Column("created_utc", DateTime),
)
Table(
    "pw_location",
    policeworks,
    Column("location_id", GUID),
    Column("uprn", String(12)),
    Column("building", String(60)),
    Column("street", String(80)),
    Column("locality", String(60)),
    Column("town", String(60)),
    Column("postcode", String(10)),
    Column("easting", Integer),
    Column("northing", Integer),
)
Table(
    "pw_occurrence",
    policeworks,
    Column("occurrence_id", GUID),
    Column("crime_reference", String(20)),
    Column("legacy_crime_no", String(16)),
    Column("incident_number", String(20)),
    Column("origin", String(12)),
    Column("ho_offence_code", String(10)),
    Column("vendor_class_code", String(12)),
    Column("counting_rules_version", String(10)),
    Column("committed_from_utc", DateTime),
    Column("committed_to_utc", DateTime),
    Column("reported_utc", DateTime),
    Column("recorded_utc", DateTime),
    Column("location_id", GUID),
    Column("mo_text", Text),
    Column("status", String(10)),
    Column("oic", String(12)),
    Column("outcome_code", String(10)),
    Column("outcome_date", Date),
    Column("da_flag", Boolean),
    Column("hate_strand", String(20)),
    Column("cp_flag", Boolean),
    Column("division", Integer),
    Column("mopi_group", Integer),
    Column("review_date", Date),
    Column("legal_hold", Boolean),
)
Table(
    "pw_link",
    policeworks,
    Column("link_id", GUID),
    Column("from_type", String(12)),
    Column("from_id", GUID),
    Column("to_type", String(12)),
    Column("to_id", GUID),
    Column("link_type", String(12)),
)
Table(
    "pw_warning",
    policeworks,
    Column("warning_id", GUID),
    Column("subject_type", String(10)),
    Column("subject_id", GUID),
    Column("code", String(16)),
    Column("start_date", Date),
    Column("review_date", Date),
    Column("end_date", Date),
    Column("restricted", Boolean),
)
Table(
    "pw_intel",
    policeworks,
    Column("intel_id", GUID),
    Column("subject_person_id", GUID),
    Column("grading", String(5)),
    Column("created_utc", DateTime),
    Column("review_state", String(20)),
    Column("summary", Text),
)
Table(
    "pw_safeguarding",
    policeworks,
    Column("referral_id", GUID),
    Column("person_id", GUID),
    Column("occurrence_id", GUID),
    Column("agency", String(30)),
    Column("status", String(20)),
    Column("referred_utc", DateTime),
)
Table(
    "pw_bail",
    policeworks,
    Column("bail_id", GUID),
    Column("person_id", GUID),
    Column("occurrence_id", GUID),
    Column("conditions", String(120)),
    Column("return_date", Date),
)

# Ground truth: one SQLite file, documented in docs/estate.md.
truth = MetaData()

Table(
    "estate",
    truth,
    Column("key", String(40)),
    Column("value", Text),
)
Table(
    "human",
    truth,
    Column("human_id", Integer),
    Column("forename", String(60)),
    Column("middle_names", String(60)),
    Column("surname", String(60)),
    Column("gender", String(1)),
    Column("dob", Date),
    Column("dob_year_only", Boolean),
    Column("pnc_id", String(20)),
    Column("target_person_id", String(36)),
)
Table(
    "person_record",
    truth,
    Column("system", String(12)),
    Column("source_table", String(20)),
    Column("source_key", String(40)),
    Column("human_id", Integer),
    Column("forename", String(60)),
    Column("surname", String(60)),
    Column("dob", Date),
    Column("variant", String(20)),
)
Table(
    "hard_pair",
    truth,
    Column("kind", String(12)),
    Column("human_a", Integer),
    Column("human_b", Integer),
)
Table(
    "crime",
    truth,
    Column("crime_reference", String(20)),
    Column("era", String(8)),
    Column("legacy_key", String(16)),
    Column("policeworks_key", String(36)),
    Column("target_event_id", String(36)),
    Column("disposition", String(12)),
    Column("reason", Text),
    Column("recorded_year", Integer),
    Column("ho_offence_code", String(10)),
)
Table(
    "crime_victim",
    truth,
    Column("crime_reference", String(20)),
    Column("human_id", Integer),
    Column("target_event_id", String(36)),
    Column("target_person_id", String(36)),
)
Table(
    "firearms",
    truth,
    Column("subject_type", String(10)),
    Column("truth_id", Integer),
    Column("target_warning_id", String(36)),
    Column("target_subject_id", String(36)),
    Column("legacy_key", String(20)),
    Column("policeworks_key", String(36)),
    Column("active", Boolean),
)
Table(
    "exclusion",
    truth,
    Column("system", String(12)),
    Column("source_table", String(20)),
    Column("source_key", String(40)),
    Column("rule", String(30)),
    Column("outcome", String(20)),
    Column("reason", Text),
)
Table(
    "quarantine",
    truth,
    Column("system", String(12)),
    Column("source_table", String(20)),
    Column("source_key", String(60)),
    Column("reason", Text),
)

#: Declared key of every source and ground-truth table (indexed after the estate is loaded).
KEYS: dict[str, tuple[str, ...]] = {
    "NOMINAL": ("NOMINAL_REF",),
    "ALIAS": ("NOMINAL_REF", "SEQ"),
    "ADDRESS": ("ADDR_REF",),
    "CRIME": ("CRIME_NO",),
    "CRIME_NOMINAL": ("CRIME_NO", "NOMINAL_REF", "ROLE"),
    "BAIL": ("CRIME_NO", "NOMINAL_REF"),
    "pw_person": ("person_id",),
    "pw_location": ("location_id",),
    "pw_occurrence": ("occurrence_id",),
    "pw_link": ("link_id",),
    "pw_warning": ("warning_id",),
    "pw_intel": ("intel_id",),
    "pw_safeguarding": ("referral_id",),
    "pw_bail": ("bail_id",),
    "estate": ("key",),
    "human": ("human_id",),
    "person_record": ("system", "source_table", "source_key"),
    "hard_pair": ("kind", "human_a", "human_b"),
    "crime": ("crime_reference",),
    "crime_victim": ("crime_reference", "human_id"),
    "firearms": ("subject_type", "truth_id"),
    "exclusion": ("system", "source_table", "source_key"),
    "quarantine": ("system", "source_table", "source_key"),
}

for _md in (legacy, policeworks, truth):
    for _table in _md.tables.values():
        Index(f"ix_{_table.name.lower()}_key", *(_table.c[c] for c in KEYS[_table.name]))
