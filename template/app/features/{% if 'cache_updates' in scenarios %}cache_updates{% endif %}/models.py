"""The `items` table, and `item_writes`: the count of writes that versions the stats."""

from decimal import Decimal

from sqlalchemy import DDL, BigInteger, String, event
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Money as integer cents: exact on every database (SQLite has no decimal type).
    price_cents: Mapped[int] = mapped_column(BigInteger)
    # Incremented by every write; cache writes compare it so an older value never wins.
    version: Mapped[int] = mapped_column(default=1)

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_cents).scaleb(-2)


class ItemWrites(Base):
    """One row counting every write to `items`, deletes included: the stats' version.

    Each write bumps it in its own transaction, so it only ever grows, and an aggregate
    read together with it in one statement carries exactly the writes it includes.
    """

    __tablename__ = "item_writes"

    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)


# The row exists from the table's creation on, so a write only ever has to increment it.
event.listen(
    ItemWrites.__table__, "after_create", DDL("INSERT INTO item_writes (id, total) VALUES (1, 0)")
)
