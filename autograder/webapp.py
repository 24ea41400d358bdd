"""The routes of the workshop service (DESIGN.md's HTTP contract), as a Starlette app over a
:class:`autograder.service.Service`.

Handlers that touch the database or the disk are plain functions, which Starlette runs in its
thread pool, so the event loop keeps answering while they wait; only the upload is read in
the loop, as it arrives.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .dispatch import page_digest, pages
from .errors import AutograderError
from .intake import Refused
from .service import COOKIE, CSP, Service, _clean, check_join
from .webpages import page_routes

log = logging.getLogger("autograder.service")

HTML_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(service: Service) -> Any:
    """The ASGI app of ``service``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Route

    def error(exc: Refused) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except Refused as exc:
                response = error(exc)
            except AutograderError as exc:
                response = error(Refused(422, str(exc)))
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                response = error(Refused(500, "the service failed on this request; try again"))
            # The path only: a personal link's token is in its query string.
            log.info(
                "%s %s %d %.1f ms",
                request.method,
                request.url.path,
                response.status_code,
                1000 * (time.perf_counter() - started),
            )
            return response

        return endpoint

    async def member(request: Request) -> Any:
        return await run_in_threadpool(service.member, request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def assignments(request: Request) -> Response:
        await member(request)
        return JSONResponse(await run_in_threadpool(service.assignments))

    async def submit(request: Request) -> Response:
        who = await member(request)
        name, files = await service.receive_files(request)

        key = request.headers.get("idempotency-key", "")[:100]
        body = await run_in_threadpool(service.accept, request, who, name, files, key)
        return JSONResponse(body, status_code=202, headers={"Location": body["url"]})

    async def my_submissions(request: Request) -> Response:
        who = await member(request)

        def listing() -> list[dict[str, Any]]:
            positions = service.queue.positions()
            return [
                service.status(request, s, positions) for s in service.queue.of_student(who.name)
            ]

        return JSONResponse(await run_in_threadpool(listing))

    async def one_submission(request: Request) -> Response:
        who = await member(request)

        def answer() -> dict[str, Any]:
            sub = service.owned(who, request.path_params["sub_id"])
            return service.status(request, sub, service.queue.positions())

        return JSONResponse(await run_in_threadpool(answer))

    async def feedback(request: Request) -> Response:
        who = await member(request)

        def page() -> str:
            sub = service.owned(who, request.path_params["sub_id"])
            path = pages(service.course) / f"{sub.id}.html"
            if not path.is_file():
                raise Refused(404, "this submission has no feedback page yet; it is " + sub.status)
            live = service.live_result(sub)
            if live is not None and service.on_stale_page is not None:
                digest_file = path.with_suffix(".json")
                try:
                    kept = digest_file.read_text()
                except OSError:
                    kept = ""
                if page_digest(live) not in kept:
                    # A grader changed a score or a comment since: the page says so now.
                    service.on_stale_page(sub, live)
            return path.read_text(encoding="utf-8")

        html = await run_in_threadpool(page)
        return HTMLResponse(html, headers=HTML_HEADERS)

    async def leaderboard(request: Request) -> Response:
        await member(request)
        html = await run_in_threadpool(service.leaderboard, request.path_params["assignment"])
        return HTMLResponse(html, headers=HTML_HEADERS)

    async def class_results(request: Request) -> Response:
        who = await member(request)
        if not who.instructor:
            raise Refused(403, "only the instructor's token sees the whole class")

        def results() -> list[dict[str, Any]]:
            from .gradebook import load_results

            name = request.path_params["assignment"]
            if name not in service.course.assignments():
                raise Refused(422, f"no assignment {_clean(name)!r}")
            return [r.to_json() for r in load_results(service.course.gradebook_url, name)]

        return JSONResponse(await run_in_threadpool(results))

    async def me(request: Request) -> Response:
        token = request.query_params.get("token", "")
        address = request.client.host if request.client else "?"
        service._check_guessing(address)
        who = await run_in_threadpool(service.roster.authenticate, token)
        if who is None:
            service._bad_token(address)
            raise Refused(401, "this link is not valid (revoked or mistyped); ask for a new one")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=30 * 86400,
            httponly=True,
            samesite="lax",
            secure=service.options.secure_cookies,
        )
        return response

    async def join(request: Request) -> Response:
        address = request.client.host if request.client else "?"
        service._check_guessing(address)
        try:
            data = await request.json()
        except ValueError:
            raise Refused(415, 'send JSON: {"code": "...", "name": "..."}') from None
        if not isinstance(data, dict):
            raise Refused(415, 'send JSON: {"code": "...", "name": "..."}')
        code, name = str(data.get("code", ""))[:200], str(data.get("name", ""))[:200]

        def add() -> dict[str, Any]:
            try:
                checked = check_join(service, code, name)
            except Refused as exc:
                if exc.status == 401:
                    service._bad_token(address)
                raise
            entry, token = service.roster.add(checked)
            return {"name": entry.name, "token": token, "link": service.link(request, entry)}

        return JSONResponse(await run_in_threadpool(add), status_code=201)

    routes = [
        Route("/healthz", guarded(healthz)),
        Route("/me", guarded(me)),
        Route("/api/join", guarded(join), methods=["POST"]),
        Route("/api/assignments", guarded(assignments)),
        Route("/api/submissions", guarded(submit), methods=["POST"]),
        Route("/api/submissions", guarded(my_submissions), methods=["GET"]),
        Route("/api/submissions/{sub_id}", guarded(one_submission)),
        Route("/feedback/{sub_id}", guarded(feedback)),
        Route("/leaderboard/{assignment}", guarded(leaderboard)),
        Route("/api/class/{assignment}", guarded(class_results)),
    ]

    routes += page_routes(service, guarded)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        sentence = {
            404: "no such address; the API is under /api (see the README)",
            405: "this address does not take that method",
        }.get(status, "the request could not be served")
        return JSONResponse({"error": sentence}, status_code=status)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
