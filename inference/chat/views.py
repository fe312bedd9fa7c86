import asyncio

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_POST

from inference.gateway.routing import model_states

from .upload import UploadError, extract

MULTIPART_ROOM = 64 * 1024


def chat(request):
    # Signed-in users only (LoginRequiredMiddleware); the conversation itself lives in the browser.
    return render(request, "inference/chat.html", {
        "models": sorted(model_states().items()),
        "max_tokens": settings.CHAT_MAX_TOKENS,
        "upload_max_bytes": settings.CHAT_UPLOAD_MAX_BYTES,
    })


@require_POST
async def upload(request):
    """The text of one .txt or .pdf file as JSON, for the page to add to its conversation (CSRF-checked).
    Async: reading a PDF (in a child process, upload.py) holds neither Django's sync thread nor the event loop."""
    # Refused before the multipart body is parsed; the framing around the file needs a little room.
    declared = request.META.get("CONTENT_LENGTH", "")
    length = int(declared) if declared.isdigit() else 0
    if length > settings.CHAT_UPLOAD_MAX_BYTES + MULTIPART_ROOM:
        return JsonResponse({"error": f"The upload is {filesizeformat(length)}; files up to "
                                      f"{filesizeformat(settings.CHAT_UPLOAD_MAX_BYTES)} can be added."}, status=400)
    uploaded = await asyncio.to_thread(request.FILES.get, "file")  # parses the multipart body
    if uploaded is None:
        return JsonResponse({"error": "No file was sent (the form field is named file)."}, status=400)
    try:
        extracted = await extract(uploaded.name, uploaded.size, uploaded.read)
    except UploadError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(extracted.as_dict())
