"""The run report's accounting tables: energy and savings per device type, money by party,
terminal states and the aggregation loss, each with its unit (definitions: docs/outputs.md)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["accounting_html"]


def _table(caption: str, header: list[str], rows: list[list[Any]], note: str = "") -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    foot = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return f"<h2>{html.escape(caption)}</h2><table><tr>{head}</tr>\n{body}</table>{foot}"


def _energy(kpis: dict[str, Any]) -> str:
    energy, savings = kpis["energy"], kpis["savings"]
    terminal = energy.get("terminal_state", {})
    rows = []
    for device, e in energy["by_device"].items():
        s = savings["by_device"].get(device, {})
        rows.append(
            [
                device,
                e["uncontrolled_kwh"],
                e["baseline_in_force_kwh"],
                e["metered_kwh"],
                s.get("volume_kwh"),
                terminal.get(f"{device}_kwh"),
                s.get("shift_eur"),
                s.get("volume_eur"),
                s.get("total_eur"),
            ]
        )
    rows.append(
        [
            "all flexible devices",
            energy["flexible_uncontrolled_kwh"],
            energy["flexible_baseline_in_force_kwh"],
            energy["flexible_metered_kwh"],
            savings["volume_kwh"],
            sum(terminal.values()) if terminal else None,
            savings["shift_eur"],
            savings["volume_eur"],
            savings["total_eur"],
        ]
    )
    header = [
        "device type",
        "uncontrolled twin, kWh",
        "baseline in force, kWh",
        "metered, kWh",
        "not drawn (volume), kWh",
        "terminal state vs twin, kWh",
        "shift, EUR",
        "volume, EUR",
        "savings, EUR",
    ]
    run = kpis.get("run", {})
    note = (
        f"Counted: the reporting window and the {run.get('tail_s', 0) / 3600:g} h tail after it, against the "
        "uncontrolled twins over the same steps. Savings are a valuation at the day-ahead price, not cash; "
        "shift = the same energy drawn at other times, volume = energy not drawn at the twin's mean price. "
        "Terminal state: stored energy left in the devices minus the twins' (thermal stores as heat)."
    )
    return _table("Energy and savings against the uncontrolled twins", header, rows, note)


def _money(kpis: dict[str, Any], run_dir: Path) -> str:
    path = run_dir / "ledger.parquet"
    if not path.is_file():
        return ""
    ledger = pd.read_parquet(path)
    paid = ledger.groupby("payer")["eur"].sum()
    received = ledger.groupby("payee")["eur"].sum()
    net = received.sub(paid, fill_value=0.0)
    roles = net.groupby(net.index.str.split(":").str[0]).agg(["sum", "count"])
    rows = [[role, int(r["count"]), float(r["sum"])] for role, r in roles.iterrows()]
    reasons = ledger.groupby("reason")["eur"].agg(["sum", "count"])
    rows_reason = [[reason, int(r["count"]), float(r["sum"])] for reason, r in reasons.iterrows()]
    note = (
        f"Every euro that changed hands, from ledger.parquet ({len(ledger)} rows; sum of all nets "
        f"{float(net.sum()):.2f} EUR). Net = received minus paid."
    )
    out = _table("Money by party (ledger)", ["role", "parties", "net, EUR"], rows, note)
    out += _table("Money by reason (ledger)", ["reason", "rows", "EUR"], rows_reason)
    extrapolated = kpis.get("fman_kpi", {}).get("extrapolated")
    if isinstance(extrapolated, dict) and extrapolated.get("caveat"):
        out += f"<p class='note'><b>Extrapolated figures:</b> {html.escape(str(extrapolated['caveat']))}</p>"
    return out


def _aggregation(kpis: dict[str, Any]) -> str:
    agg = kpis.get("aggregation")
    if not isinstance(agg, dict):
        return ""
    rows = [[key.replace("_", " "), value] for key, value in agg.items() if not isinstance(value, dict | list)]
    return _table(
        "Aggregation loss",
        ["measure (unit in the name)", "value"],
        rows,
        "Flexibility the members offered that the aggregates the FMAN planned or bid could not use.",
    )


def _comfort(kpis: dict[str, Any]) -> str:
    rows = []
    for device, c in kpis.get("comfort", {}).get("by_device", {}).items():
        sizes = [c.get("gap"), c.get("uncontrolled_gap"), c.get("unit")]
        rows.append([device, c["violations"], c["uncontrolled_violations"], *sizes])
    header = ["device type", "violations", "twins' violations", "size", "twins' size", "unit"]
    return _table("Comfort", header, rows) if rows else ""


def accounting_html(kpis: dict[str, Any], run_dir: Path) -> str:
    """The report's accounting sections as HTML (sections whose KPIs are absent are left out)."""
    if "savings" not in kpis:
        return ""
    return _energy(kpis) + _comfort(kpis) + _money(kpis, run_dir) + _aggregation(kpis)
