from . import live


def live_state(request):
    """The status bar and banners, drawn into every page before the websocket takes over."""
    if not request.user.is_authenticated:
        return {}
    return {"live": live.state()}
