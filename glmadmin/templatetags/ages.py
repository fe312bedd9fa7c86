"""Ages ("12 s ago") are counted by the browser, not written by the server.

A page's live fragments are sent only when what they show changes (glmadmin.live compares a digest of
them); an age written on the server changes every second, so every publish would send every open
dashboard again, and "nothing new" could never be told. The server writes the moment itself, as an
absolute time, which is what a page without JavaScript shows; static/glmadmin/ages.js turns it into an
age and keeps it current.
"""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

register = template.Library()


@register.filter
def ago(moment: datetime | str | None) -> str:
    """`<time data-ago>` for a datetime (or its ISO text, as the live state keeps it); "" for None."""
    if not moment:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    return format_html('<time datetime="{}" data-ago title="{}">{}</time>', moment.isoformat(),
                       date_format(local, "Y-m-d H:i:s T"), date_format(local, "j M H:i:s"))
