"""HTTP control endpoints under /_emulator/ that drive and inspect a separately run emulator (contract 18)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import codec

if TYPE_CHECKING:
    from .server import PandaEmulator

__all__ = ["dispatch"]


def dispatch(emu: PandaEmulator, method: str, path: str, body: bytes) -> tuple[int, Any]:
    """(status, JSON payload) for one control request; 400 for a bad body, 404 for an unknown target.

    GET    /_emulator/requests                   received API requests     DELETE clears them
    POST   /_emulator/users                      {"email", "api_key", "active"?}
    POST   /_emulator/datasets                   {"slug", "columns": [..] | null, "name"?}
    GET    /_emulator/datasets/<slug>            the dataset object       GET .../rows: {external_id: data}
    POST   /_emulator/datasets/<slug>/lock       {"seconds"?: number}     POST .../unlock
    POST   /_emulator/faults                     {"status", "count"?: 1, "after_write"?: false}
    POST   /_emulator/faults/ratio               {"status", "ratio", "seed"?: 0, "after_write"?: false}
    POST   /_emulator/latency                    {"seconds"}
    POST   /_emulator/slow                       {"seconds", "count"?: null}
    POST   /_emulator/reject_rows                {"pattern", "problem"?: "external_id" | "data"}
    DELETE /_emulator/reject_rows                clears every row rule
    POST   /_emulator/reset
    """
    parts = [unquote(p) for p in path.strip("/").split("/")[1:]]
    try:
        args: dict[str, Any] = codec.loads(body) if body.strip() else {}
        if not isinstance(args, dict):
            raise TypeError("the body must be a JSON object")
        return _route(emu, method, parts, args)
    except KeyError as exc:
        return 404, {"error": "unknown: %s" % exc}
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}


def _need(args: dict[str, Any], name: str) -> Any:
    if name not in args:
        raise TypeError("missing field %r" % name)
    return args[name]


def _route(emu: PandaEmulator, method: str, parts: list[str], args: dict[str, Any]) -> tuple[int, Any]:
    ok: tuple[int, Any] = (200, {"ok": True})
    match method, parts:
        case "GET", ["requests"]:
            return 200, [r.as_json() for r in emu.requests]
        case "DELETE", ["requests"]:
            emu.clear_requests()
            return ok
        case "POST", ["users"]:
            emu.add_user(
                str(_need(args, "email")), str(_need(args, "api_key")), bool(args.get("active", True))
            )
            return ok
        case "POST", ["datasets"]:
            emu.create_dataset(str(_need(args, "slug")), _need(args, "columns"), args.get("name"))
            return ok
        case "GET", ["datasets", slug]:
            return 200, emu.dataset(slug)
        case "GET", ["datasets", slug, "rows"]:
            return 200, emu.rows(slug)
        case "POST", ["datasets", slug, "lock"]:
            seconds = args.get("seconds")
            emu.lock(slug, None if seconds is None else float(seconds))
            return ok
        case "POST", ["datasets", slug, "unlock"]:
            emu.unlock(slug)
            return ok
        case "POST", ["faults"]:
            emu.fail_writes(
                int(_need(args, "status")), int(args.get("count", 1)), bool(args.get("after_write", False))
            )
            return ok
        case "POST", ["faults", "ratio"]:
            emu.fail_ratio(
                int(_need(args, "status")),
                float(_need(args, "ratio")),
                int(args.get("seed", 0)),
                bool(args.get("after_write", False)),
            )
            return ok
        case "POST", ["latency"]:
            emu.set_latency(float(_need(args, "seconds")))
            return ok
        case "POST", ["slow"]:
            count = args.get("count")
            emu.slow_replies(float(_need(args, "seconds")), None if count is None else int(count))
            return ok
        case "POST", ["reject_rows"]:
            emu.reject_rows(str(_need(args, "pattern")), str(args.get("problem", "external_id")))
            return ok
        case "DELETE", ["reject_rows"]:
            emu.reject_rows(None)
            return ok
        case "POST", ["reset"]:
            emu.reset()
            return ok
    return 404, {"error": "no control endpoint %s /_emulator/%s" % (method, "/".join(parts))}
