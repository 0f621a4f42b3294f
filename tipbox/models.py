"""SQLAlchemy 2.x typed models.

What is here is what a seized database gives away, so it is kept to: a hash per source,
a designation, days (never times), sizes and key fingerprints. No IP address, no user
agent, no file name, no plaintext.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# A fixed naming convention keeps constraint names, and so migrations, stable across backends.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ItemKind(enum.StrEnum):
    MESSAGE = "message"
    FILE = "file"


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # scrypt(codename, pepper), hex. The codename itself is never stored.
    codename_hash: Mapped[str] = mapped_column(String(64), unique=True)
    designation: Mapped[str] = mapped_column(String(80), unique=True)
    created_on: Mapped[dt.date] = mapped_column(Date)
    last_activity_on: Mapped[dt.date] = mapped_column(Date, index=True)
    starred: Mapped[bool] = mapped_column(Boolean, default=False)
    # Public half of the key pair derived from the codename; replies are encrypted to it.
    # The private half exists only while the source is logged in, in server memory.
    reply_public_key: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    items: Mapped[list[Item]] = relationship(
        back_populates="source", cascade="all, delete-orphan", order_by="Item.seq",
        passive_deletes=True,
    )
    replies: Mapped[list[Reply]] = relationship(
        back_populates="source", cascade="all, delete-orphan", order_by="Reply.seq",
        passive_deletes=True,
    )


class Item(Base):
    """One message or one file, stored as one ciphertext file named by ``id``."""

    __tablename__ = "items"
    # Item numbers are unique per source: the database, not only the code, says so.
    __table_args__ = (UniqueConstraint("source_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"),
                                           index=True)
    # Order within a source, so "message, then files" reads back as it was sent
    # without storing a time of day.
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[ItemKind] = mapped_column(
        Enum(ItemKind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    size: Mapped[int] = mapped_column(BigInteger)
    # Space-separated full fingerprints of the keys this item was encrypted to.
    key_fingerprints: Mapped[str] = mapped_column(Text)
    submitted_on: Mapped[dt.date] = mapped_column(Date)

    source: Mapped[Source] = relationship(back_populates="items")

    @property
    def fingerprints(self) -> list[str]:
        return self.key_fingerprints.split()


class Journalist(Base):
    """A newsroom account: Argon2id passphrase hash plus a TOTP secret."""

    __tablename__ = "journalists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    passphrase_hash: Mapped[str] = mapped_column(String(255))
    # Sealed with the instance's totp_key (tipbox.accounts.TotpSealer): "v1:" + base64.
    totp_secret: Mapped[str] = mapped_column(String(128))
    # The time step of the last TOTP code accepted: a code can never be used twice.
    last_totp_step: Mapped[int] = mapped_column(BigInteger, default=0)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    # Raised when credentials are reset or the account deactivated; sessions remember the
    # epoch they started in, so every older session ends at once.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                             default=None)
    created_on: Mapped[dt.date] = mapped_column(Date)


class ItemRead(Base):
    """Journalist ``journalist_id`` has opened (downloaded) item ``item_id``."""

    __tablename__ = "item_reads"

    item_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"),
                                         primary_key=True)
    journalist_id: Mapped[int] = mapped_column(
        ForeignKey("journalists.id", ondelete="CASCADE"), primary_key=True, index=True)


class Reply(Base):
    """A journalist's reply: one ciphertext for the newsroom (a file in the store, like an
    item) and one for the source (HPKE to the source's reply key, kept in this row)."""

    __tablename__ = "replies"
    __table_args__ = (UniqueConstraint("source_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"),
                                           index=True)
    journalist_id: Mapped[int | None] = mapped_column(
        ForeignKey("journalists.id", ondelete="SET NULL"), default=None)
    seq: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    key_fingerprints: Mapped[str] = mapped_column(Text)
    for_source: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    sent_on: Mapped[dt.date] = mapped_column(Date)
    read_by_source: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_by_source: Mapped[bool] = mapped_column(Boolean, default=False)

    source: Mapped[Source] = relationship(back_populates="replies")

    @property
    def fingerprints(self) -> list[str]:
        return self.key_fingerprints.split()


class WebSession(Base):
    """Server-side session data. The browser holds only a random id; this row is keyed
    by the id's SHA-256, so a database copy cannot be replayed as a cookie."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    interface: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class Upload(Base):
    """An upload sent in pieces (tipbox.intake.pieces), between its start and its finish.

    Its ciphertext waits in the store's temp folder, in files named after ``token`` (the
    claim token, tipbox.store_claims); ``state`` says which, how far each got and where the
    packet check stands, never a file name. It belongs to one source *and* one log-in
    session (``session_key``: the SHA-256 under which the session's row is kept), so it
    ends with that session. ``idle_until`` is rounded up to ten minutes, as a session's
    expiry is: a seized database learns no finer time.
    """

    __tablename__ = "uploads"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"),
                                           index=True)
    session_key: Mapped[str] = mapped_column(String(64), index=True)
    held_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(Text)
    idle_until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class KeyState(enum.StrEnum):
    PENDING = "pending"  # imported, possession not yet proven: nothing is encrypted to it
    ACTIVE = "active"  # every new item is encrypted to each active key
    RETIRED = "retired"  # kept on record; nothing new is encrypted to it


class NewsroomKey(Base):
    """A newsroom public key and where it is in its life."""

    __tablename__ = "newsroom_keys"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[str] = mapped_column(Text)  # armored
    state: Mapped[KeyState] = mapped_column(
        Enum(KeyState, native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]), index=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    uids: Mapped[str] = mapped_column(Text)
    key_created_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date, default=None)
    # SHA-256 of the code in the last challenge; the code itself is never stored.
    challenge_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    added_on: Mapped[dt.date] = mapped_column(Date)
    activated_on: Mapped[dt.date | None] = mapped_column(Date, default=None)
    retired_on: Mapped[dt.date | None] = mapped_column(Date, default=None)


class AuditEntry(Base):
    """Who changed a key or an account, and when. Never anything about sources."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class FloodCount(Base):
    """How many codenames (or submissions) were made in one ten-minute bucket, for the
    flood defence (tipbox.flood). Only the last two buckets of each purpose exist; older
    ones are deleted as new ones start. A count, never who or exactly when."""

    __tablename__ = "flood_counts"

    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    # Seconds since the epoch divided by the bucket's length (600 s).
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)


class SpentTicket(Base):
    """A flood-defence ticket already used: each is accepted once, in every worker
    process and after a restart. Deleted once the ticket has expired (tipbox.flood)."""

    __tablename__ = "spent_tickets"

    # The ticket's random nonce, hex; it says nothing about who held it.
    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The ticket's expiry rounded up to ten minutes, as sessions' are.
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
