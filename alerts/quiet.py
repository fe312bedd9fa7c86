"""Why open incidents notify nobody now, read once for a list of them: the active silences and the
incidents that inhibit (silences.covering / inhibition.cause_of take these as `among`)."""

from . import inhibition, silences


def reasons() -> dict:
    return {"silences": silences.active(), "causes": inhibition.causes()}
