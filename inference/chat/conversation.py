"""The conversation a chat page sends with each turn: checked, then cut to fit the model's context.

The browser keeps the history (the server keeps no transcripts) and sends all of it; what goes to the
engine is its newest part, at most settings.CHAT_HISTORY_MAX_CHARS characters.
"""

from dataclasses import dataclass

ROLES = ("user", "assistant")


class ConversationError(ValueError):
    pass


@dataclass(frozen=True)
class Turns:
    messages: list[dict]
    dropped: int  # oldest messages left out to fit


def checked(messages) -> list[dict]:
    """Only {"role", "content"} of each message, or ConversationError naming what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise ConversationError("messages must be a non-empty list.")
    clean = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ConversationError(f"message {number}: role must be one of {', '.join(ROLES)}.")
        if not isinstance(message.get("content"), str):
            raise ConversationError(f"message {number}: content must be text.")
        clean.append({"role": message["role"], "content": message["content"]})
    if clean[-1]["role"] != "user":
        raise ConversationError("the last message must be the user's.")
    if not clean[-1]["content"].strip():
        raise ConversationError("the message is empty.")
    return clean


def fitted(messages: list[dict], max_chars: int) -> Turns:
    """The newest messages whose text fits in max_chars, starting with a user message."""
    if len(messages[-1]["content"]) > max_chars:
        raise ConversationError(f"the message is {len(messages[-1]['content']):,} characters; "
                                f"at most {max_chars:,} can be sent.")
    start, total = len(messages), 0
    while start > 0 and total + len(messages[start - 1]["content"]) <= max_chars:
        start -= 1
        total += len(messages[start]["content"])
    # A kept answer without its question reads as the model talking to itself: start at a user turn.
    while messages[start]["role"] != "user":
        start += 1
    return Turns(messages[start:], start)
