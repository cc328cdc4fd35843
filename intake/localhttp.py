"""One small HTTP client for the optional local model services (the LLM parser backend and
speech-to-text): a POST with a timeout and a size cap, failures sorted into three kinds the
callers explain in Korean. The URLs come from settings only, never from a request."""

from __future__ import annotations

import urllib.error
import urllib.request


class ServiceError(Exception):
    def __init__(self, kind: str, code: int = 0):
        super().__init__(kind)
        self.kind = kind  # "timeout", "http" (code set) or "connect"
        self.code = code


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, max_bytes: int) -> bytes:
    """The answer's body (at most max_bytes + 1 bytes read), or ServiceError."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read(max_bytes + 1)
    except TimeoutError as exc:
        raise ServiceError("timeout") from exc
    except urllib.error.HTTPError as exc:
        raise ServiceError("http", exc.code) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceError("timeout" if "timed out" in str(exc) else "connect") from exc
