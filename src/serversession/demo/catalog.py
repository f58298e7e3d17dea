"""The demo shop's products: a fixed list in code.

The catalogue never changes while the demo runs, so it lives here rather than in
a database: the demo is about sessions, and a cart only needs SKUs to point at.
Prices are whole-cent ``Decimal`` strings so totals add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Product:
    """One thing for sale: ``sku`` is the key a cart stores, ``price`` is in dollars,
    ``icon`` names its picture in ``templates/_icons.html``."""

    sku: str
    name: str
    price: Decimal
    description: str
    icon: str

    @property
    def price_text(self) -> str:
        """The price as the API and pages show it: ``"12.50"`` (see :func:`money`)."""
        return money(self.price)


PRODUCTS: tuple[Product, ...] = (
    Product(
        "tea-sencha",
        "Sencha green tea",
        Decimal("12.50"),
        "Fresh, grassy Japanese green tea, 100 g of loose leaves.",
        "tea",
    ),
    Product(
        "mug-classic", "Classic mug", Decimal("9.00"), "A sturdy 350 ml stoneware mug that keeps your tea warm.", "mug"
    ),
    Product(
        "cookie-box",
        "Butter cookies",
        Decimal("6.75"),
        "A tin of crisp butter cookies, baked in small batches.",
        "cookie",
    ),
    Product(
        "notebook-a5", "A5 notebook", Decimal("8.20"), "Dotted pages, lay-flat binding, 160 pages of ideas.", "notebook"
    ),
    Product(
        "pen-fountain", "Fountain pen", Decimal("24.00"), "A smooth steel-nib pen with a blue ink cartridge.", "pen"
    ),
    Product(
        "plant-succulent",
        "Little succulent",
        Decimal("7.40"),
        "Hard to kill, easy to love. Comes in a clay pot.",
        "plant",
    ),
    Product("socks-warm", "Warm socks", Decimal("11.00"), "Merino wool socks for long evenings of reading.", "socks"),
    Product(
        "candle-cedar",
        "Cedar candle",
        Decimal("15.90"),
        "A soy wax candle that smells like a walk in the woods.",
        "candle",
    ),
)

_BY_SKU = {p.sku: p for p in PRODUCTS}


def money(amount: Decimal) -> str:
    """Dollars as a decimal string with two places (``"12.50"``), formatted from the
    ``Decimal`` itself, never through a float."""
    return f"{amount:.2f}"


def find(sku: str) -> Product | None:
    """Return the product with ``sku``, or None if the shop has no such thing."""
    return _BY_SKU.get(sku)
