"""Refusals in OpenAI's JSON error shape, raised anywhere on the admission path."""

import json


class GatewayError(Exception):
    """A request the gateway answers itself, with a message a user of an OpenAI client understands."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",  # noqa: A002 - OpenAI's name
                 code: str | None = None, param: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.retry_after = code, param, retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def encoded(self) -> bytes:
        return json.dumps(self.body()).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers

    def __repr__(self):
        return f"GatewayError({self.status}, {self.code!r}, {self.message!r})"


def bad_request(code: str, message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code=code, param=param)
