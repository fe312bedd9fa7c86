from . import live


def live_state(request):
    """The status bar and banners, drawn into every page before the websocket takes over."""
    if not request.user.is_authenticated:
        return {}
    # Read once per request: a page drawn from several templates (the dashboard's cards) shows one state.
    if not hasattr(request, "live_state"):
        request.live_state = live.state()
    return {"live": request.live_state}
