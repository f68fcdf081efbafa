"""``print(cm)``: the pool's slots as a table, in the columns of ldappool 3.x."""

from __future__ import annotations

from collections.abc import Sequence

from prettytable import PrettyTable

from ldappool._core.slots import SlotView

__all__ = ["render"]


def render(slots: Sequence[SlotView], size: int, max_lifetime: float | None, now: float) -> str:
    """One row per occupied slot: an open connection, or one lent or being opened."""
    limit = "unlimited" if max_lifetime is None else f"{max_lifetime:g}"
    table = PrettyTable()
    table.field_names = [
        f"Slot ({size} max)",
        "Connected",
        "Active",
        "URI",
        f"Lifetime ({limit} max)",
        "Bind DN",
    ]
    for slot in slots:
        table.add_row(
            [
                slot.number,
                "connected" if slot.connected else "not connected",
                "active" if slot.in_use else "inactive",
                slot.uri,
                f"{now - slot.opened_at:.1f}" if slot.connected else "",
                "(anonymous)" if slot.anonymous else (slot.dn or ""),
            ]
        )
    return str(table.get_string())
