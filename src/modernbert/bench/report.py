"""A plain-text table of a benchmark result (the JSON holds everything; this is for eyes)."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(name: str, side: str, entry: dict[str, Any], ratio: dict | None) -> str:
    if "error" in entry:
        return f"{name:<24} {side:<14} {entry['error']}"
    mem = entry.get("peak_memory_bytes")
    cells = [
        f"{name:<24}",
        f"{side:<14}",
        f"{entry.get('attn', ''):<6}",
        f"{_fmt(entry.get('tokens_per_s'), ',.0f'):>11}",
        f"{_fmt(ratio and ratio.get('tokens_per_s'), '.2f'):>6}",
        f"{_fmt(None if mem is None else mem / 2**20, ',.0f'):>9}",
        f"{_fmt(ratio and ratio.get('peak_memory_bytes'), '.2f'):>6}",
        f"{_fmt(entry.get('mfu'), '.1%'):>6}",
        f"{_fmt(entry.get('first_loss'), '.4f'):>8}",
    ]
    return " ".join(cells)


def format_table(result: dict[str, Any]) -> str:
    """One line per scenario and side; ratios are ours (or the extra side) over theirs."""
    head = (
        f"{'scenario':<24} {'side':<14} {'attn':<6} {'tokens/s':>11} {'x':>6} "
        f"{'peak MiB':>9} {'mem x':>6} {'MFU':>6} {'loss0':>8}"
    )
    lines = [f"preset {result['preset']} on {result['machine']['device']}", head]
    for name, scenario in result["scenarios"].items():
        for side, entry in scenario.items():
            if not isinstance(entry, dict) or side in ("ratio",):
                continue
            if side == "ours":
                ratio = scenario["ratio"]
            elif side == "theirs":
                ratio = None
            else:
                ratio = entry.get("ratio_vs_theirs")
            lines.append(_row(name, side, entry, ratio))
    loss = result.get("loss_memory")
    if loss is not None:
        mib = {m: loss.get(f"{m}_peak_bytes") for m in ("plain", "chunked")}
        cells = [
            f"{m} {_fmt(None if b is None else b / 2**20, ',.0f')} MiB"
            if b is not None
            else f"{m} {loss.get(f'{m}_error', '-')}"
            for m, b in mib.items()
        ]
        lines.append(
            f"loss head+CE peak, {loss['masked_tokens']:,} masked x {loss['vocab_size']:,} "
            f"vocab: {', '.join(cells)} (plain/chunked {_fmt(loss.get('ratio'), '.1f')}x)"
        )
    return "\n".join(lines)
