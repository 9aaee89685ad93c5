"""Find columns that hold personal data, so they can be dropped on load.

Survey exports linked to a CRM often carry e-mail addresses, phone numbers,
names, IP addresses and location coordinates (Qualtrics adds ``IPAddress``,
``RecipientEmail``, ``LocationLatitude`` ... by default). cxlib drops them when
it loads the data, so they never reach a model, a notebook output or a
dashboard. Columns are found by the study's declaration, by their name, and by
their content (a sample of values that look like e-mail addresses, phone numbers
or IP addresses).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

__all__ = ["find_personal_data"]

_NAME_PATTERNS = [
    r"e?-?mail(address)?",
    r"(recipient|customer|contact|respondent)?e?mail",
    r"(mobile|cell|tele)?phone(number)?",
    r"(tel|telephone|mobile|msisdn)",
    r"(first|last|full|given|sur|family|recipientfirst|recipientlast|customer|contact)?name",
    r"ip(address|addr|v4|v6)?",
    r"(location)?(latitude|longitude|lat|lon|lng)",
    r"(geo)?(coordinates|location)",
    r"(street|home|postal)?address",
    r"(zip|post)(code)?",
    r"(date)?ofbirth|dob|birthdate|birthday",
    r"(ssn|socialsecurity|passport|iban|creditcard)(number)?",
]
_NAME_RE = re.compile(r"^(" + "|".join(_NAME_PATTERNS) + r")$")
_VALUE_RES = {
    "e-mail addresses": re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"),
    "IP addresses": re.compile(r"^(\d{1,3}\.){3}\d{1,3}$|^[0-9a-fA-F:]{7,39}$"),
    "phone numbers": re.compile(r"^\+?\(?\d[\d\s().-]{5,18}\d$"),
}
_DATE_RE = re.compile(
    r"^\d{4}-\d{1,2}-\d{1,2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$|^\d{4}[./]\d{1,2}[./]\d{1,2}$"
)
# Qualtrics' column for a respondent's e-mail when distributed by panel, etc.
_EXACT = {
    "recipientemail",
    "recipientfirstname",
    "recipientlastname",
    "externalreference",
    "externaldatareference",
}


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def find_personal_data(
    frame: pd.DataFrame,
    *,
    declared: Iterable[str] = (),
    keep: Iterable[str] = (),
    sample: int = 200,
) -> dict[str, str]:
    """Columns of ``frame`` that hold personal data, with the reason for each.

    Parameters
    ----------
    frame : pandas.DataFrame
        The raw export.
    declared : iterable of str
        Columns the study spec declares as personal data.
    keep : iterable of str
        Columns the study uses (id, items, segments ...): never flagged by name or
        content, since the spec says what they are.
    sample : int
        How many non-missing values of a text column to inspect.

    Returns
    -------
    dict
        Column name -> why it counts as personal data.
    """
    keep = set(keep)
    found: dict[str, str] = {}
    for col in declared:
        if col in frame.columns:
            found[col] = "declared as personal data in the study spec"
    for col in frame.columns:
        if col in found or col in keep:
            continue
        norm = _normalise(col)
        if norm in _EXACT or _NAME_RE.match(norm):
            found[col] = "its name says it holds personal data"
            continue
        series = frame[col]
        if series.dtype != object and not pd.api.types.is_string_dtype(series):
            continue
        values = series.dropna().astype(str).str.strip()
        values = values[(values != "") & ~values.str.match(_DATE_RE)].head(sample)
        if values.empty:
            continue
        for what, pattern in _VALUE_RES.items():
            share = values.str.match(pattern).mean()
            if share >= 0.5:
                found[col] = f"{share:.0%} of its values look like {what}"
                break
    return found
