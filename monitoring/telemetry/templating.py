"""Small formatting shared by the command line and the pages."""

from django.template.defaultfilters import filesizeformat


def size(num_bytes: int | None) -> str:
    """Bytes as Django's filesizeformat writes them (1.4 GB, powers of 1024), for plain text: an ordinary space
    instead of the non-breaking one meant for HTML, and "-" for a reading the source could not give."""
    return "-" if num_bytes is None else filesizeformat(num_bytes).replace("\xa0", " ")
