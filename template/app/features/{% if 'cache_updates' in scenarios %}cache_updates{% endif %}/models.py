"""The `items` table."""

from decimal import Decimal

from sqlalchemy import BigInteger, String
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
