"""Where a password may hide in an error: the local variables of its traceback's frames.

Error trackers and debuggers show those locals; ldappool promises that none of its frames
an error passed through keeps the password it was given (``ldappool._auth.forget_locals``).
"""

from __future__ import annotations

from pathlib import Path

#: Frames of the tests themselves hold what they passed in: not ldappool's to clear.
TESTS = str(Path(__file__).resolve().parent)


def frames_holding(error: BaseException, secret: str) -> list[str]:
    """The frames (``file:function``) of ``error``'s traceback and of those of its
    causes and contexts, outside the tests, whose locals hold ``secret``: as a value, or
    inside a tuple, list or dict that is one (``*args``, ``**kwargs``)."""
    found: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        tb = current.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if not code.co_filename.startswith(TESTS) and any(
                _holds(value, secret) for value in tb.tb_frame.f_locals.values()
            ):
                found.append(f"{Path(code.co_filename).name}:{code.co_name}")
            tb = tb.tb_next
    return found


def _holds(value: object, secret: str) -> bool:
    if isinstance(value, str):
        return value == secret
    if isinstance(value, (tuple, list)):
        return any(item == secret for item in value)
    if isinstance(value, dict):
        return any(item == secret for item in value.values())
    return False
