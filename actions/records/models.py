"""The department's records: one SQLAlchemy model per table, for SQLite and PostgreSQL alike.

Times are naive local (Beijing) time throughout: that is how the department's systems record
violations, and how every reply shows them.
"""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()

VIOLATION_STATUSES = ("unprocessed", "processed", "paid")
REPORT_STATUSES = ("received", "dispatched", "accepted", "rejected", "fixed")
REPORT_KINDS = ("facility", "violation", "misconduct")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")


class ViolationCode(Base):
    __tablename__ = "violation_codes"
    code = Column(String(8), primary_key=True)
    description = Column(Text, nullable=False)
    short_name = Column(String(32), nullable=False)
    points = Column(Integer, nullable=False)
    fine_min = Column(Integer, nullable=False)
    fine_max = Column(Integer, nullable=False)
    fine_default = Column(Integer, nullable=False)
    category = Column(String(16), nullable=False)


class Vehicle(Base):
    __tablename__ = "vehicles"
    id = Column(Integer, primary_key=True)
    plate = Column(String(12), nullable=False, unique=True)
    plate_type = Column(String(2), nullable=False)
    vin = Column(String(17), nullable=False, unique=True)
    engine_no = Column(String(20), nullable=False)
    vehicle_type = Column(String(16), nullable=False)  # 小型轿车, 小型普通客车, 重型半挂牵引车 ...
    use_nature = Column(String(16), nullable=False)    # 非营运, 营运, 预约出租客运 ...
    seats = Column(Integer, nullable=False)
    owner_name = Column(String(32), nullable=False)
    owner_phone = Column(String(20), nullable=False)
    registered_on = Column(Date, nullable=False)
    inspection_due = Column(Date, nullable=False)
    violations = relationship("Violation", back_populates="vehicle")


class Licence(Base):
    __tablename__ = "licences"
    id = Column(Integer, primary_key=True)
    licence_no = Column(String(18), nullable=False, unique=True)
    file_no = Column(String(12), nullable=False, unique=True)
    holder_name = Column(String(32), nullable=False)
    holder_phone = Column(String(20), nullable=False)
    licence_class = Column(String(8), nullable=False)
    first_issued = Column(Date, nullable=False)
    cycle_start = Column(Date, nullable=False)
    points = Column(Integer, nullable=False, default=0)
    expires_on = Column(Date, nullable=False)
    status = Column(String(16), nullable=False, default="valid")


class Violation(Base):
    __tablename__ = "violations"
    id = Column(Integer, primary_key=True)
    record_no = Column(String(20), nullable=False, unique=True)
    vehicle_id = Column(Integer, ForeignKey("vehicles.id"), nullable=False)
    licence_id = Column(Integer, ForeignKey("licences.id"))
    occurred_at = Column(DateTime, nullable=False)
    place = Column(String(128), nullable=False)
    code = Column(String(8), ForeignKey("violation_codes.code"), nullable=False)
    description = Column(Text, nullable=False)
    fine = Column(Integer, nullable=False)
    points = Column(Integer, nullable=False)
    authority = Column(String(64), nullable=False)
    status = Column(String(16), nullable=False, default="unprocessed")
    recorded_at = Column(DateTime, nullable=False)
    processed_at = Column(DateTime)
    decision_no = Column(String(32))
    paid_at = Column(DateTime)
    late_fee = Column(Integer, nullable=False, default=0)
    vehicle = relationship("Vehicle", back_populates="violations")
    __table_args__ = (Index("ix_violations_vehicle_status", "vehicle_id", "status"),)


class Person(Base):
    __tablename__ = "persons"
    id = Column(Integer, primary_key=True)
    display_name = Column(String(64))
    phone = Column(String(20))
    email = Column(String(254))
    sms_consent = Column(Boolean, nullable=False, default=False)
    created_at = Column(DateTime, nullable=False)
    # Set when this person's channels were linked into another person: everything now lives there.
    merged_into_id = Column(Integer, ForeignKey("persons.id"))


class ChannelIdentity(Base):
    __tablename__ = "channel_identities"
    id = Column(Integer, primary_key=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False, index=True)
    channel = Column(String(16), nullable=False)   # wechat, weibo, sms, telegram, rest
    external_id = Column(String(128), nullable=False)
    blocked = Column(Boolean, nullable=False, default=False)  # unsubscribed / blocked us
    created_at = Column(DateTime, nullable=False)
    last_seen_at = Column(DateTime, nullable=False)
    __table_args__ = (UniqueConstraint("channel", "external_id"),)


class LinkCode(Base):
    """A one-time code shown on one channel and typed on another: proof that one person holds both."""
    __tablename__ = "link_codes"
    id = Column(Integer, primary_key=True)
    code_hash = Column(String(64), nullable=False, index=True)  # codes repeat over time; live ones do not
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False)
    channel = Column(String(16), nullable=False)
    external_id = Column(String(128), nullable=False)
    created_at = Column(DateTime, nullable=False)
    expires_at = Column(DateTime, nullable=False)
    used_at = Column(DateTime)
    used_by_person_id = Column(Integer, ForeignKey("persons.id"))


class VehicleBinding(Base):
    __tablename__ = "vehicle_bindings"
    id = Column(Integer, primary_key=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False, index=True)
    vehicle_id = Column(Integer, ForeignKey("vehicles.id"), nullable=False)
    verified_at = Column(DateTime, nullable=False)
    __table_args__ = (UniqueConstraint("person_id", "vehicle_id"),)


class LicenceBinding(Base):
    __tablename__ = "licence_bindings"
    id = Column(Integer, primary_key=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False, index=True)
    licence_id = Column(Integer, ForeignKey("licences.id"), nullable=False)
    verified_at = Column(DateTime, nullable=False)
    __table_args__ = (UniqueConstraint("person_id", "licence_id"),)


class Subscription(Base):
    __tablename__ = "subscriptions"
    id = Column(Integer, primary_key=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False, index=True)
    alert_kind = Column(String(16), nullable=False)  # violation, inspection, licence, report
    channel = Column(String(16), nullable=False)
    quiet_start = Column(String(5))  # "22:00"
    quiet_end = Column(String(5))    # "08:00"
    active = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime, nullable=False)
    __table_args__ = (UniqueConstraint("person_id", "alert_kind", "channel"),)


class Report(Base):
    __tablename__ = "reports"
    id = Column(Integer, primary_key=True)
    report_no = Column(String(20), nullable=False, unique=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False, index=True)
    channel = Column(String(16), nullable=False)
    kind = Column(String(16), nullable=False)
    facility_type = Column(String(16))
    violation_type = Column(String(32))
    plate = Column(String(12))
    location = Column(String(256))
    latitude = Column(String(16))
    longitude = Column(String(16))
    description = Column(Text)
    occurred_at = Column(DateTime)
    status = Column(String(16), nullable=False, default="received")
    reject_reason = Column(Text)
    created_at = Column(DateTime, nullable=False)
    decided_at = Column(DateTime)


class ReportMedia(Base):
    __tablename__ = "report_media"
    id = Column(Integer, primary_key=True)
    report_id = Column(Integer, ForeignKey("reports.id"), nullable=False, index=True)
    kind = Column(String(8), nullable=False)  # photo, video
    url = Column(Text, nullable=False)
    created_at = Column(DateTime, nullable=False)


class AppointmentSlot(Base):
    __tablename__ = "appointment_slots"
    id = Column(Integer, primary_key=True)
    kind = Column(String(16), nullable=False)  # accident, violation
    starts_at = Column(DateTime, nullable=False)
    ends_at = Column(DateTime, nullable=False)
    capacity = Column(Integer, nullable=False)
    booked = Column(Integer, nullable=False, default=0)
    __table_args__ = (UniqueConstraint("kind", "starts_at"),)


class Appointment(Base):
    __tablename__ = "appointments"
    id = Column(Integer, primary_key=True)
    appointment_no = Column(String(20), nullable=False, unique=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False, index=True)
    slot_id = Column(Integer, ForeignKey("appointment_slots.id"), nullable=False)
    kind = Column(String(16), nullable=False)
    contact_phone = Column(String(20), nullable=False)
    status = Column(String(16), nullable=False, default="booked")
    created_at = Column(DateTime, nullable=False)


class Handoff(Base):
    """A conversation flagged for the department's staff."""
    __tablename__ = "handoffs"
    id = Column(Integer, primary_key=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False)
    channel = Column(String(16), nullable=False)
    sender_id = Column(String(128), nullable=False)
    reason = Column(Text)
    status = Column(String(16), nullable=False, default="open")  # open, taken, closed
    created_at = Column(DateTime, nullable=False)
    taken_by = Column(String(64))   # the staff username who took the conversation
    taken_at = Column(DateTime)
    closed_at = Column(DateTime)
    replies = Column(Integer, nullable=False, default=0)  # numbers each staff reply's outbox event


class Feedback(Base):
    __tablename__ = "feedback"
    id = Column(Integer, primary_key=True)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False)
    channel = Column(String(16), nullable=False)
    text = Column(Text, nullable=False)
    created_at = Column(DateTime, nullable=False)


class OutboxMessage(Base):
    """A notification waiting to be sent: written in the same transaction as its cause."""
    __tablename__ = "outbox"
    id = Column(Integer, primary_key=True)
    event_kind = Column(String(32), nullable=False)  # violation, inspection_due, report_decided ...
    event_key = Column(String(64), nullable=False)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False)
    channel = Column(String(16), nullable=False)
    payload = Column(JSON, nullable=False)
    status = Column(String(16), nullable=False, default="pending")
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime, nullable=False)
    claimed_until = Column(DateTime)
    last_error = Column(Text)
    created_at = Column(DateTime, nullable=False)
    sent_at = Column(DateTime)
    __table_args__ = (
        UniqueConstraint("event_key", "person_id", "channel"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )


class ServiceToken(Base):
    """A platform access token shared by every process (WeChat's, for one): one row per name.
    `refreshing_until` is a short lease so that one process at a time fetches a new one."""
    __tablename__ = "service_tokens"
    name = Column(String(64), primary_key=True)
    value = Column(Text)
    expires_at = Column(DateTime)
    refreshing_until = Column(DateTime)


class ProofAttempt(Base):
    """Every proof offered for a vehicle or licence, right or wrong: the basis of lock-outs."""
    __tablename__ = "proof_attempts"
    id = Column(Integer, primary_key=True)
    at = Column(DateTime, nullable=False)
    person_id = Column(Integer, ForeignKey("persons.id"), nullable=False)
    subject_kind = Column(String(16), nullable=False)  # vehicle, licence
    subject = Column(String(32), nullable=False)
    success = Column(Boolean, nullable=False)
    __table_args__ = (
        Index("ix_proof_person_at", "person_id", "at"),
        Index("ix_proof_subject_at", "subject", "at"),
    )


class AuditEntry(Base):
    """Append-only: who saw which personal record, over which channel, when."""
    __tablename__ = "audit_log"
    id = Column(Integer, primary_key=True)
    at = Column(DateTime, nullable=False, index=True)
    person_id = Column(Integer, ForeignKey("persons.id"))
    channel = Column(String(16), nullable=False)
    sender_id = Column(String(128), nullable=False)
    action = Column(String(32), nullable=False)   # disclose_violations, disclose_points ...
    subject = Column(String(32), nullable=False)  # the plate or licence number
    detail = Column(JSON, nullable=False)


STAFF_ROLES = ("reviewer", "supervisor")


class StaffAccount(Base):
    """A member of the department's staff who signs in to the console."""
    __tablename__ = "staff_accounts"
    id = Column(Integer, primary_key=True)
    username = Column(String(64), nullable=False, unique=True)
    password_hash = Column(String(255), nullable=False)  # argon2id, with its parameters
    role = Column(String(16), nullable=False)
    disabled = Column(Boolean, nullable=False, default=False)
    created_at = Column(DateTime, nullable=False)


class StaffSession(Base):
    """A signed-in browser: only the token's hash is stored, so a leaked table signs nobody in."""
    __tablename__ = "staff_sessions"
    id = Column(Integer, primary_key=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    account_id = Column(Integer, ForeignKey("staff_accounts.id"), nullable=False, index=True)
    csrf_token = Column(String(64), nullable=False)
    expires_at = Column(DateTime, nullable=False)
    created_at = Column(DateTime, nullable=False)
