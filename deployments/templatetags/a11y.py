"""Form fields that say what describes them: the help text, or the error once there is one."""

from django import template
from django.forms import BoundField

register = template.Library()


@register.filter
def described(field: BoundField, has_help: bool = False) -> str:
    """The field's widget with ``aria-describedby`` naming the ids _field.html renders: its
    error list (``<id>_error``) when it has errors, else its help (``<id>_helptext``)."""
    if field.errors:
        ids = f"{field.auto_id}_error"
    elif has_help:
        ids = f"{field.auto_id}_helptext"
    else:
        return field.as_widget()
    return field.as_widget(attrs={"aria-describedby": ids})
