"""Response headers that every page of both interfaces carries."""

from __future__ import annotations

from flask import Response

BASE_CSP = {
    "default-src": "'none'",
    "style-src": "'self'",
    "img-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
}

PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in (
    "accelerometer", "ambient-light-sensor", "autoplay", "battery", "camera",
    "display-capture", "document-domain", "encrypted-media", "fullscreen", "geolocation",
    "gyroscope", "hid", "idle-detection", "magnetometer", "microphone", "midi", "payment",
    "picture-in-picture", "publickey-credentials-get", "screen-wake-lock", "serial",
    "usb", "web-share", "xr-spatial-tracking", "clipboard-read", "clipboard-write",
    "interest-cohort", "browsing-topics",
))


def content_security_policy(extra: dict[str, str] | None = None) -> str:
    directives = dict(BASE_CSP)
    directives.update(extra or {})
    return "; ".join(f"{k} {v}" for k, v in directives.items())


# Every header but the Content-Security-Policy, which one page extends (SCRIPT_CSP). The
# serving layer writes these on the error pages gunicorn answers itself (tipbox.serve).
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy())
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    headers.pop("Server", None)
    return response
