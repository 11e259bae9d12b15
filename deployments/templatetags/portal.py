import datetime as dt

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def diff_lines(diff: str) -> list[tuple[str, str]]:
    """Split a unified diff into (css class, line) pairs for colouring."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            css = "hunk"
        elif line.startswith("+"):
            css = "add"
        elif line.startswith("-"):
            css = "del"
        elif line.startswith("@@"):
            css = "hunk"
        else:
            css = ""
        lines.append((css, line))
    return lines


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key)


@register.filter
def ago(value: dt.datetime) -> str:
    """'just now' for the last minute, else '3 minutes ago'."""
    if timezone.now() - value < dt.timedelta(minutes=1):
        return "just now"
    return f"{timesince(value)} ago"
