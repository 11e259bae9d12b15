"""Times as the viewer reads them: ``<time>`` in UTC, turned into local time by portal.js."""

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def local_time(value: dt.datetime | None) -> str:
    """``<time datetime="2026-11-28T16:51:31Z" data-local>2026-11-28 16:51:31 UTC</time>``: UTC
    without JavaScript, the viewer's time zone with it (UTC stays on hover)."""
    if not value:
        return ""
    utc = value.astimezone(dt.UTC)
    return format_html(
        '<time datetime="{}" data-local>{} UTC</time>',
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
    )


def spoken(seconds: float) -> str:
    """3 s, 3 min 12 s, 1 h 4 min."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    return f"{seconds} s"


@register.filter
def duration(start: dt.datetime | None, end: dt.datetime | None = None) -> str:
    """How long from ``start`` to ``end`` (to now when ``end`` is None), in words."""
    if not start:
        return ""
    return spoken(((end or timezone.now()) - start).total_seconds())


@register.filter
def seconds(value: int | None) -> str:
    """A number of seconds in words (a step's duration)."""
    return "" if value is None else spoken(value)
