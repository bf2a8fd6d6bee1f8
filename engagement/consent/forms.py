"""Consent policy, printable forms and roster import, all driven by the files in the top-level ``consent/`` folder.

- ``policy.yaml``: the text of the forms (purpose, data collected, sharing, withdrawal, contact) and
  the default retention in days;
- ``form.html.j2`` / ``approval.html.j2`` (+ ``.md.j2``): Jinja2 templates; PDF is the HTML printed by
  WeasyPrint on one A4 page;
- ``roster.schema.json``: the JSON Schema every roster CSV row must satisfy.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import yaml

from engagement.consent.registry import ConsentRecord
from engagement.errors import UserError
from engagement.files import output_file, write_atomic
from engagement.resources import resource_dir

POLICY_KEYS = ("form_version", "institution", "contact", "retention_days", "purpose", "data_collected", "sharing", "withdrawal")
FORM_SUFFIXES = (".pdf", ".html", ".md")


def load_policy(path: Path | None = None) -> dict[str, Any]:
    """The consent policy (``consent/policy.yaml`` unless ``path``); missing keys are a UserError."""
    path = path or resource_dir("consent") / "policy.yaml"
    try:
        policy = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:  # an institution's edit saved in another encoding
        raise UserError(f"cannot read consent policy {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(policy, dict):
        raise UserError(f"consent policy {path}: expected a mapping of {', '.join(POLICY_KEYS)}")
    missing = [key for key in POLICY_KEYS if key not in policy]
    if missing:
        raise UserError(f"consent policy {path} lacks {', '.join(missing)}")
    if not isinstance(policy["retention_days"], int) or policy["retention_days"] < 1:
        raise UserError(f"consent policy {path}: retention_days must be a positive whole number of days")
    return policy


def render_form(kind: str, out: Path, **values: Any) -> Path:
    """Render the ``form`` or ``approval`` template to ``out`` (.pdf, .html or .md), atomically."""
    import jinja2

    suffix = out.suffix.lower()
    if suffix not in FORM_SUFFIXES:
        raise UserError(f"{out}: form output must end in {', '.join(FORM_SUFFIXES)}")
    output_file(out, make_folders=True)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("consent")),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
    )
    template = f"{kind}.md.j2" if suffix == ".md" else f"{kind}.html.j2"
    text = environment.get_template(template).render(**values)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".pdf":
        from weasyprint import HTML

        return write_atomic(out, HTML(string=text, base_url=str(resource_dir("consent"))).write_pdf)
    return write_atomic(out, lambda stream: stream.write(text.encode()))


class InvalidRecord(UserError):
    """Consent fields that break the roster rules: the message names each field and rule broken, never a value."""


@functools.cache
def _roster_schema() -> dict[str, Any]:
    return json.loads((resource_dir("consent") / "roster.schema.json").read_text())


def record_problems(values: dict[str, str], partial: bool = False) -> list[str]:
    """Every rule of ``consent/roster.schema.json`` (and of calendar dates) that ``values`` break; with ``partial``,
    fields that are absent are not missed. The one check of IDs and course codes, whichever command they come from."""
    import jsonschema

    schema = _roster_schema()
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(values), key=lambda e: list(e.path))
    problems = [] if partial else [f"{key}: missing" for key in schema["required"] if key not in values]
    problems += [_describe(error) for error in errors if error.validator != "required"]
    if "date" in values and not any(list(error.path) == ["date"] for error in errors):
        try:
            if dt.date.fromisoformat(values["date"]) > dt.date.today():
                problems.append("date: after today (the day a form was signed)")
        except ValueError:
            problems.append("date: not a calendar date")
    return problems


def check_record(fields: dict[str, str | None]) -> ConsentRecord:
    """The consent record of one roster row or one ``consent set``: values are stripped, empty ones count as
    absent, and any broken rule is an :class:`InvalidRecord`."""
    values = {key: value.strip() for key, value in fields.items() if value and value.strip()}
    problems = record_problems(values)
    if problems:
        raise InvalidRecord("; ".join(problems))
    return ConsentRecord(
        student=values["student_id"], course=values["course"], status=values["status"],
        recorded_on=dt.date.fromisoformat(values["date"]) if "date" in values else dt.date.today(),
        form_version=values.get("form_version"), seat=values.get("seat"), name=values.get("name"), date_given="date" in values,
    )


def read_roster(path: Path) -> list[ConsentRecord]:
    """Parse and validate a roster CSV; every bad row (a student listed twice in a course included) is reported
    with its line and nothing is returned unless all rows are good."""
    schema = _roster_schema()
    if not path.is_file():
        raise UserError(f"roster not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a CSV file (not UTF-8 text)") from None
    if "\0" in text:
        raise UserError(f"{path}: not a CSV file (binary content)")
    reader = csv.DictReader(text.splitlines(), strict=True)
    problems: list[str] = []
    records: list[ConsentRecord] = []
    first_line: dict[tuple[str, str], int] = {}
    try:
        header = reader.fieldnames or []
        unknown = [name for name in header if name not in schema["properties"]]
        if not header or unknown or "student_id" not in header:
            expected = ", ".join(schema["properties"])
            raise UserError(f"{path}: line 1: header must name columns from {expected}; got {', '.join(header) or 'nothing'}")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:  # the csv module would keep the last column of a name and drop the others unseen
            raise UserError(f"{path}: line 1: header names {', '.join(repeated)} twice")
        for row in reader:
            line = reader.line_num
            if None in row or None in row.values():
                problems.append(f"line {line}: expected {len(header)} fields")
                continue
            try:
                record = check_record(row)
            except InvalidRecord as error:
                problems.append(f"line {line}: {error}")
                continue
            # Two rows for one student would leave the consent to whichever came last.
            first = first_line.setdefault((record.student, record.course), line)
            if first != line:
                problems.append(f"line {line}: the same student_id and course as line {first}")
                continue
            records.append(record)
    except csv.Error as error:
        raise UserError(f"{path}: line {reader.line_num}: not a valid CSV ({error})") from None
    if problems:
        raise UserError(f"{path}: {len(problems)} bad row(s), nothing imported: " + " | ".join(problems))
    if not records:
        raise UserError(f"{path}: no rows to import")
    return records


# How each JSON Schema rule is told, without the value: a roster's values are personal data.
PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$"  # the schema's rule for free text: no control characters
RULES = {
    "pattern": lambda rule: "must not hold control characters (tabs, line breaks, NUL)" if rule == PRINTABLE else f"must match {rule}",
    "maxLength": lambda rule: f"longer than {rule} characters",
    "enum": lambda rule: f"must be one of {', '.join(rule)}",
}


def _describe(error: Any) -> str:
    field = ".".join(map(str, error.path)) or "row"
    rule = RULES.get(error.validator, lambda _: f"breaks the {error.validator} rule")
    return f"{field}: {rule(error.validator_value)}"
