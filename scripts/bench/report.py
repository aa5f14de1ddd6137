"""Results: the table on stdout, and the same as JSON and Markdown under bench-results/."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

TABLE_LABELS = (
    ("seq_scan", "seq scans"),
    ("seq_tup_read", "rows read by them"),
    ("idx_scan", "index scans"),
    ("inserted", "inserted"),
    ("updated", "updated"),
    ("deleted", "deleted"),
)
COLUMNS = ("scenario", "throughput", "p50 ms", "p99 ms", "responses by status", "target", "met")


@dataclass
class Result:
    scenario: str
    headline: str  # the throughput cell: "8,512 req/s", "500 sold in 0.84 s"
    throughput: float | None  # in `unit`
    unit: str
    p50_ms: float | None
    p99_ms: float | None
    statuses: dict[int, int]
    target: str
    met: bool | None = None  # None: no target (or --quick, where targets do not apply)
    transport_errors: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # invariant violations: exit 1
    misses: list[str] = field(default_factory=list)  # targets not met, and why
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def cells(self) -> tuple[str, ...]:
        return (
            self.scenario,
            self.headline,
            _ms(self.p50_ms),
            _ms(self.p99_ms),
            responses(self.statuses, self.transport_errors),
            self.target,
            {True: "yes", False: "NO", None: "-"}[self.met],
        )


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def responses(statuses: dict[int, int], transport: dict[str, int]) -> str:
    parts = [f"{status}: {n:,}" for status, n in sorted(statuses.items()) if status]
    parts += [f"{kind}: {n:,}" for kind, n in sorted(transport.items())]
    return ", ".join(parts) or "none"


def table(results: list[Result]) -> str:
    rows = [COLUMNS, *(r.cells() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(results: list[Result]) -> str:
    def row(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [row(COLUMNS), "|" + "---|" * len(COLUMNS)]
    lines += [row(r.cells()) for r in results]
    return "\n".join(lines)


def _details_markdown(result: Result) -> list[str]:
    lines = [f"### {result.scenario}", ""]
    d = result.details
    if "description" in d:
        lines += [d["description"], ""]
    for problem in result.problems:
        lines.append(f"- **INVARIANT VIOLATED**: {problem}")
    for miss in result.misses:
        lines.append(f"- target missed: {miss}")
    for key in ("facts", "generator"):
        if key in d:
            lines.append(f"- {key}: " + ", ".join(f"{k} = {v}" for k, v in d[key].items()))
    cpu = d.get("cpu", {})
    if cpu:
        cores = ", ".join(f"{k} {v}" for k, v in cpu.get("cores", {}).items())
        lines.append(
            f"- CPU (cores busy; machine {cpu.get('machine_busy_cores')} of its cores): {cores}"
        )
    sessions = d.get("sessions", {})
    if sessions.get("mean_backends"):
        states = ", ".join(f"{k} {v}" for k, v in sessions["mean_backends"].items())
        lines.append(
            f"- PostgreSQL sessions (mean count; max {sessions.get('max_connections')}): {states}"
        )
    if d.get("server_log"):
        events = ", ".join(f"{k} x{v}" for k, v in d["server_log"].items())
        lines.append(f"- API log during the run: {events}")
    tables = d.get("tables", {})
    if tables:
        parts = []
        for table, c in tables.items():
            bits = [f"{c[k]:,} {label}" for k, label in TABLE_LABELS if c.get(k)]
            parts.append(f"{table} ({', '.join(bits)})")
        lines.append("- tables: " + "; ".join(parts))
    if "db_per_success" in d:
        lines.append(f"- database time per success: {d['db_per_success']}")
    statements = d.get("statements", {})
    if statements.get("top"):
        lines += ["", "| statement | calls | total ms | mean ms | share |", "|---|---|---|---|---|"]
        for s in statements["top"][:8]:
            query = s["query"][:140].replace("|", "\\|")
            lines.append(
                f"| `{query}` | {s['calls']:,} | {s['total_ms']:,.0f} | {s['mean_ms']} "
                f"| {s['share']:.0%} |"
            )
    profile = d.get("profile", {})
    if profile.get("samples"):
        lines += ["", f"py-spy, {profile['samples']:,} samples (self time, top 12):", ""]
        lines += [f"- {share:.1%} `{name}`" for name, share in profile["self"][:12]]
        lines += ["", "Innermost application frame (top 10):", ""]
        lines += [f"- {share:.1%} `{name}`" for name, share in profile["innermost_app_frame"][:10]]
    return [*lines, ""]


def markdown(report: dict[str, Any], results: list[Result]) -> str:
    m = report["machine"]
    s = report["settings"]
    lines = [
        f"# Evently benchmark, {report['started']}",
        "",
        f"Mode: {'quick (targets do not apply)' if report['quick'] else 'full'}; "
        f"exit status {report['exit_status']}; code at {report.get('commit', '?')}.",
        "",
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory_gib')} GiB, "
        f"kernel {m.get('kernel')}, Python {m.get('python')}, "
        f"PostgreSQL {m.get('postgresql')}, Redis {m.get('redis')}, {m.get('wrk') or 'no wrk'}; "
        f"load average before the run {m.get('load_average_before')}, "
        f"cores busy just before it {m.get('busy_cores_before')}.",
        "",
        f"Server: `{s['command']}`; {s['env']}.",
        "",
        markdown_table(results),
        "",
    ]
    for line in report.get("headlines", []):
        lines.append(f"- {line}")
    lines += ["", "## Details", ""]
    for result in results:
        if result.details:
            lines += _details_markdown(result)
    return "\n".join(lines)


def write(results_dir: Path, stamp: str, report: dict[str, Any], results: list[Result]) -> Path:
    """bench-results/<stamp>.json and .md, and latest.md; returns the Markdown path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    document = {**report, "results": [asdict(r) for r in results]}
    (results_dir / f"{stamp}.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    text = markdown(report, results)
    md = results_dir / f"{stamp}.md"
    md.write_text(text)
    (results_dir / "latest.md").write_text(text)
    (results_dir / "latest.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    return md


def stamp_now() -> tuple[str, str]:
    now = datetime.now().astimezone()
    return now.strftime("%Y%m%d-%H%M%S"), now.isoformat(timespec="seconds")
