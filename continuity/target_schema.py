"""The replacement records product's schema (POLE), as SQLAlchemy Core metadata.

This is the *bundled* target: what ``continuity target init URL`` creates and what the estate's
ideal target is written into. It uses only portable types so that it is identical on SQLite,
PostgreSQL and MariaDB. ``reconcile/`` never imports it: reconciliation proves a load against a
declared spec, whatever schema the vendor used.

Every record carries its MoPI group and review date. Keys are UUIDv5 text (see
:func:`continuity.domain.keys.target_key`). Timestamps are naive UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

KEY = String(36)
#: Timestamps keep their microseconds everywhere (MariaDB's DATETIME alone would drop them).
TIMESTAMP = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

metadata = MetaData()


def _mopi() -> list[Column]:
    return [Column("mopi_group", Integer), Column("mopi_review_date", Date)]


person = Table(
    "person",
    metadata,
    Column("person_id", KEY, primary_key=True),
    Column("forename", String(100)),
    Column("middle_names", String(200)),
    Column("surname", String(100), nullable=False),
    Column("dob", Date),
    Column("dob_estimated", Boolean, nullable=False),
    Column("gender_code", String(1), nullable=False),
    Column("handling_code", String(20)),
    Column("record_origin", String(20), nullable=False),
    *_mopi(),
)

person_name = Table(
    "person_name",
    metadata,
    Column("person_id", KEY, ForeignKey("person.person_id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("name_type", String(10), nullable=False),
    Column("forename", String(100)),
    Column("surname", String(100), nullable=False),
    Column("source_system", String(20)),
)

person_dob = Table(
    "person_dob",
    metadata,
    Column("person_id", KEY, ForeignKey("person.person_id"), primary_key=True),
    Column("dob", Date, primary_key=True),
    Column("estimated", Boolean, nullable=False),
    Column("source_system", String(20)),
)

person_identifier = Table(
    "person_identifier",
    metadata,
    Column("person_id", KEY, ForeignKey("person.person_id"), primary_key=True),
    Column("id_type", String(10), primary_key=True),
    Column("id_value", String(30), nullable=False),
)

location = Table(
    "location",
    metadata,
    Column("location_id", KEY, primary_key=True),
    Column("uprn", String(12)),
    Column("match_status", String(10), nullable=False),
    Column("line1", String(120)),
    Column("line2", String(120)),
    Column("line3", String(120)),
    Column("line4", String(120)),
    Column("line5", String(120)),
    Column("postcode", String(10)),
    Column("easting", Integer),
    Column("northing", Integer),
    *_mopi(),
)

event = Table(
    "event",
    metadata,
    Column("event_id", KEY, primary_key=True),
    Column("crime_reference", String(30), nullable=False),
    Column("incident_number", String(30)),
    Column("ho_offence_code", String(10), nullable=False),
    Column("counting_rules_version", String(10), nullable=False),
    Column("committed_from", TIMESTAMP),
    Column("committed_to", TIMESTAMP),
    Column("reported_at", TIMESTAMP),
    Column("recorded_at", TIMESTAMP, nullable=False),
    Column("location_id", KEY, ForeignKey("location.location_id")),
    Column("mo_text", Text),
    Column("status", String(10), nullable=False),
    Column("officer_in_charge", String(20)),
    Column("outcome_code", String(10)),
    Column("outcome_date", Date),
    Column("domestic_abuse", Boolean, nullable=False),
    Column("hate_strand", String(20)),
    Column("child_protection", Boolean, nullable=False),
    Column("division", Integer),
    *_mopi(),
)

event_person = Table(
    "event_person",
    metadata,
    Column("event_id", KEY, ForeignKey("event.event_id"), primary_key=True),
    Column("person_id", KEY, ForeignKey("person.person_id"), primary_key=True),
    Column("role", String(10), primary_key=True),
)

person_location = Table(
    "person_location",
    metadata,
    Column("person_id", KEY, ForeignKey("person.person_id"), primary_key=True),
    Column("location_id", KEY, ForeignKey("location.location_id"), primary_key=True),
    Column("link_type", String(10), nullable=False),
)

warning_marker = Table(
    "warning_marker",
    metadata,
    Column("warning_id", KEY, primary_key=True),
    Column("subject_type", String(10), nullable=False),
    Column("person_id", KEY, ForeignKey("person.person_id")),
    Column("location_id", KEY, ForeignKey("location.location_id")),
    Column("code", String(4), nullable=False),
    Column("start_date", Date),
    Column("review_date", Date),
    Column("end_date", Date),
    Column("restricted", Boolean, nullable=False),
    *_mopi(),
)

intelligence_report = Table(
    "intelligence_report",
    metadata,
    Column("intel_id", KEY, primary_key=True),
    Column("person_id", KEY, ForeignKey("person.person_id")),
    Column("grading", String(5), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("review_state", String(20), nullable=False),
    Column("summary", Text),
    *_mopi(),
)

safeguarding_referral = Table(
    "safeguarding_referral",
    metadata,
    Column("referral_id", KEY, primary_key=True),
    Column("person_id", KEY, ForeignKey("person.person_id")),
    Column("event_id", KEY, ForeignKey("event.event_id")),
    Column("agency", String(30), nullable=False),
    Column("status", String(20), nullable=False),
    Column("referred_at", TIMESTAMP, nullable=False),
    *_mopi(),
)

bail = Table(
    "bail",
    metadata,
    Column("bail_id", KEY, primary_key=True),
    Column("person_id", KEY, ForeignKey("person.person_id")),
    Column("event_id", KEY, ForeignKey("event.event_id")),
    Column("conditions", Text),
    Column("return_date", Date),
    *_mopi(),
)

ref_offence_code = Table(
    "ref_offence_code",
    metadata,
    Column("ho_offence_code", String(10), primary_key=True),
    Column("description", String(120), nullable=False),
    Column("counting_rules_version", String(10), nullable=False),
)

migration_crosswalk = Table(
    "migration_crosswalk",
    metadata,
    Column("source_system", String(20), primary_key=True),
    Column("source_table", String(40), primary_key=True),
    Column("source_key", String(80), primary_key=True),
    Column("target_table", String(40), nullable=False),
    Column("target_key", KEY, nullable=False),
    Column("rule", String(40), nullable=False),
    Column("score", Integer),
)

migration_quarantine = Table(
    "migration_quarantine",
    metadata,
    Column("source_system", String(20), primary_key=True),
    Column("source_table", String(40), primary_key=True),
    Column("source_key", String(80), primary_key=True),
    Column("reason", Text, nullable=False),
)

migration_exclusion = Table(
    "migration_exclusion",
    metadata,
    Column("source_system", String(20), primary_key=True),
    Column("source_table", String(40), primary_key=True),
    Column("source_key", String(80), primary_key=True),
    Column("reason", Text, nullable=False),
)

migration_deletion = Table(
    "migration_deletion",
    metadata,
    Column("source_system", String(20), primary_key=True),
    Column("source_table", String(40), primary_key=True),
    Column("source_key", String(80), primary_key=True),
    Column("target_table", String(40), nullable=False),
    Column("target_key", KEY, nullable=False),
    Column("rule", String(40), nullable=False),  # the crosswalk entry's rule, moved here
    Column("action", String(10), nullable=False),  # kept | retired
    Column("detected_by", String(60)),  # the run that found the record gone
)

Index("ix_crosswalk_target", migration_crosswalk.c.target_table, migration_crosswalk.c.target_key)
# Every foreign key not leading a primary key gets its own index: joins need them, and InnoDB
# would otherwise invent one, making the schema differ between databases.
Index("ix_event_person_person", event_person.c.person_id)
Index("ix_warning_person", warning_marker.c.person_id)
Index("ix_warning_location", warning_marker.c.location_id)
Index("ix_event_location", event.c.location_id)
Index("ix_person_location_location", person_location.c.location_id)
Index("ix_intelligence_report_person", intelligence_report.c.person_id)
Index("ix_safeguarding_referral_person", safeguarding_referral.c.person_id)
Index("ix_safeguarding_referral_event", safeguarding_referral.c.event_id)
Index("ix_bail_person", bail.c.person_id)
Index("ix_bail_event", bail.c.event_id)

# SQLite stores each table as one B-tree on its key (a storage option, not part of the schema):
# half the B-trees to build and a smaller file than a rowid table with a separate key index.
for _table in metadata.tables.values():
    _table.dialect_options["sqlite"]["with_rowid"] = False
