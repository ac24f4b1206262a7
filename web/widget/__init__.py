"""The patient web widget: embeddable script, demo page, call tokens, WebRTC signalling and transport."""

from web.widget.service import WidgetService

__all__ = ["WidgetService"]
