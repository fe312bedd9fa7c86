"""A fast synthetic OpenAI-style upstream for measuring the gateway's own capacity.

Raw asyncio HTTP/1.1 with keep-alive: a streamed answer is `tokens` SSE chunks
sent back to back (each its own write, as an engine sends them), then [DONE].
Not a vLLM stand-in for correctness tests: it only exists to be faster than the gateway.

    python bench/gateway/synthetic.py PORT [FIRST_MS TOKEN_MS]

With FIRST_MS/TOKEN_MS it is paced like an engine (time to first token, time per
token) without an engine's CPU use: the gateway's added latency shows on its own.

/v1/completions answers in the completions format; /v1/chat/completions in the chat format, as vLLM
sends it (a first event with the assistant role, one content delta a token, finish_reason on the last,
a usage event when stream_options.include_usage asks): gateways that parse the events (LiteLLM) need that.
"""

import asyncio
import json
import sys
import time
import traceback

FIRST_S = TOKEN_S = 0.0


def _framed(event: dict) -> bytes:
    data = b"data: " + json.dumps(event).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(i: int) -> bytes:
    return _framed({"id": "cmpl-synthetic", "object": "text_completion", "created": 0, "model": "synthetic",
                    "choices": [{"index": 0, "text": f" t{i}", "logprobs": None, "finish_reason": None}]})


def _chat_chunk(model: str, delta: dict, finish_reason=None, usage=None) -> bytes:
    event = {"id": "chatcmpl-synthetic", "object": "chat.completion.chunk", "created": int(time.time()),
             "model": model, "choices": [] if usage else
             [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    if usage:
        event["usage"] = usage
    return _framed(event)


def _usage(tokens: int) -> dict:
    return {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", 0))) if method == "POST" else b""
            if path == "/health":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                continue
            request = json.loads(body or b"{}")
            tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 16)
            chat = path.endswith("/chat/completions")
            model = str(request.get("model") or "synthetic")
            if request.get("stream"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                await asyncio.sleep(FIRST_S)
                if chat:
                    writer.write(_chat_chunk(model, {"role": "assistant", "content": ""}))
                for i in range(tokens):
                    if i and TOKEN_S:
                        await asyncio.sleep(TOKEN_S)
                    if chat:
                        writer.write(_chat_chunk(model, {"content": f" t{i}"},
                                                 "length" if i == tokens - 1 else None))
                    else:
                        writer.write(_chunk(i))
                    await writer.drain()
                if chat and (request.get("stream_options") or {}).get("include_usage"):
                    writer.write(_chat_chunk(model, {}, usage=_usage(tokens)))
                done = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            elif chat:
                answer = json.dumps({"id": "chatcmpl-synthetic", "object": "chat.completion",
                                     "created": int(time.time()), "model": model,
                                     "choices": [{"index": 0, "finish_reason": "length", "message": {
                                         "role": "assistant", "content": " t" * tokens}}],
                                     "usage": _usage(tokens)}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(answer), answer))
            else:
                answer = json.dumps({"id": "cmpl-synthetic", "object": "text_completion", "model": "synthetic",
                                     "choices": [{"index": 0, "text": " t" * tokens, "finish_reason": "length"}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": tokens,
                                               "total_tokens": tokens + 1}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(answer), answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed its connection (between requests, or mid-answer)
    except Exception:  # noqa: BLE001 - one bad connection must not pass unnoticed, nor end the others
        traceback.print_exc()
    finally:
        writer.close()


async def serve(port: int):
    # A deep accept queue: a bench opens 64+ connections at once, from the gateway and from the client.
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096, limit=1 << 20)
    async with server:
        await server.serve_forever()


def run(main):
    try:
        import uvloop  # as uvicorn uses it when installed: the upstream stays faster than what it measures
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        FIRST_S, TOKEN_S = float(sys.argv[2]) / 1000, float(sys.argv[3]) / 1000
    run(serve(int(sys.argv[1])))
