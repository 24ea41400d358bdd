"""The service's pages for people: *My workshop* (assignments, downloads, the upload form,
the history that updates itself) and the instructor's class page with its actions.

Server-rendered with the feedback pages' templates and look; the only script is
``static/status.js`` (served from here, allowed by the CSP as ``script-src 'self'``), which
writes text only. Every form carries the member's CSRF token, and cookie-authenticated posts
must come from this origin (:meth:`autograder.service.Service.member`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .classroom import check_csrf, csrf_token, extend, recent_actions, regrade, reveal, room
from .config import load_assignment
from .intake import Refused
from .pages import render

STATIC = Path(__file__).parent / "static"
#: The pages' Content-Security-Policy: the feedback pages' own, plus this origin's script,
#: its API for the script, and forms posting here only.
PAGE_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'"
)
PAGE_HEADERS = {
    # frame-ancestors works only as a header, not in the page's <meta>.
    "Content-Security-Policy": PAGE_CSP + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it Chromium sends "Origin: null" with the page's own forms,
    # and the origin check would refuse them.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def _listing(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def workshop(service: Any, request: Any, member: Any, *, error: str = "", notice: str = "") -> str:
    assignments = []
    for entry in service.assignments():
        config = load_assignment(service.course, entry["name"])
        data = _listing(service.course.data(config.dataset)) if config.dataset else []
        assignments.append(
            {
                **entry,
                "data": data,
                "has_csv": any(c.kind == "csv" for c in config.checks),
            }
        )
    positions = service.queue.positions()
    history = [service.status(request, s, positions) for s in service.queue.of_student(member.name)]
    return render(
        "workshop.html.j2",
        csp=PAGE_CSP,
        member=member,
        assignments=assignments,
        submissions=history,
        csrf=csrf_token(service, member),
        error=error,
        notice=notice,
    )


def class_page(service: Any, member: Any, *, error: str = "", notice: str = "") -> str:
    if not member.instructor:
        raise Refused(403, "only the instructor's token sees the class")
    return render(
        "class.html.j2",
        csp=PAGE_CSP,
        member=member,
        rooms=[room(service, name) for name in service.course.assignments()],
        actions=recent_actions(service),
        csrf=csrf_token(service, member),
        error=error,
        notice=notice,
    )


def page_routes(service: Any, guarded: Any) -> list[Any]:
    """The routes of the pages (``guarded`` turns a refusal into its JSON answer)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    async def member(request: Request) -> Any:
        return await run_in_threadpool(service.member, request)

    def html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)

    async def home(request: Request) -> Response:
        who = await member(request)
        done = request.query_params.get("done", "")[:64]
        notice = ""
        if done:
            sub = service.queue.get(done)
            if sub is not None and sub.student == who.name:
                notice = f"handed in {sub.assignment}: it is {sub.status}"
        return html(await run_in_threadpool(workshop, service, request, who, notice=notice))

    async def upload(request: Request) -> Response:
        who = await member(request)
        try:
            name, files = await service.receive_files(request)
            check_csrf(service, who, request.state.form_csrf)
            body = await run_in_threadpool(service.accept, request, who, name, files, "")
        except Refused as exc:
            page = await run_in_threadpool(workshop, service, request, who, error=exc.message)
            return HTMLResponse(page, status_code=exc.status, headers=PAGE_HEADERS | exc.headers)
        return RedirectResponse(f"/?done={body['id']}#history", status_code=303)

    async def released(request: Request) -> Response:
        await member(request)
        assignment = request.path_params["assignment"]
        if assignment not in service.course.assignments():
            raise Refused(404, "no such assignment")
        folder = service.course.release(assignment)
        name = request.path_params["name"]
        if name not in _listing(folder):
            raise Refused(404, "no such file in the released assignment")
        return FileResponse(folder / name, filename=Path(name).name)

    async def data(request: Request) -> Response:
        await member(request)
        assignment = request.path_params["assignment"]
        if assignment not in service.course.assignments():
            raise Refused(404, "no such assignment")
        config = load_assignment(service.course, assignment)
        folder = service.course.data(config.dataset) if config.dataset else None
        name = request.path_params["name"]
        if folder is None or name not in _listing(folder):
            raise Refused(404, "no such data file for this assignment")
        return FileResponse(folder / name, filename=Path(name).name)

    async def script(request: Request) -> Response:
        return FileResponse(
            STATIC / "status.js",
            media_type="text/javascript",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )

    async def klass(request: Request) -> Response:
        who = await member(request)
        done = request.query_params.get("done", "")
        notice = {"regrade": "queued again", "extend": "extended", "reveal": "revealed"}.get(
            done, ""
        )
        return html(await run_in_threadpool(class_page, service, who, notice=notice))

    async def action(request: Request) -> Response:
        who = await member(request)
        if not who.instructor:
            raise Refused(403, "only the instructor's token acts on the class")
        form = await request.form(max_files=0, max_fields=8)
        what, assignment = request.path_params["action"], request.path_params["assignment"]

        def act() -> None:
            check_csrf(service, who, form.get("csrf"))
            if form.get("confirm") != "yes":
                raise Refused(422, "tick 'I confirm' to do this")
            if assignment not in service.course.assignments():
                raise Refused(404, "no such assignment")
            student = str(form.get("student") or "") or None
            if what == "regrade":
                regrade(service, who, assignment, student)
            elif what == "extend":
                if student is None:
                    raise Refused(422, "choose whose deadline to extend")
                extend(service, who, student, assignment, str(form.get("until") or ""))
            elif what == "reveal":
                reveal(service, who, assignment)
            else:
                raise Refused(404, "no such action")

        try:
            await run_in_threadpool(act)
        except Refused as exc:
            page = await run_in_threadpool(class_page, service, who, error=exc.message)
            return html(page, exc.status)
        return RedirectResponse(f"/class?done={what}#room-{assignment}", status_code=303)

    async def export(request: Request) -> Response:
        who = await member(request)
        if not who.instructor:
            raise Refused(403, "only the instructor's token exports the class")
        assignment = request.path_params["assignment"]
        if assignment not in service.course.assignments():
            raise Refused(404, "no such assignment")

        def write() -> bytes:
            from .gradebook import load_results, write_csv

            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "export.csv"
                results = load_results(service.course.gradebook_url, assignment)
                write_csv(results, path, course=service.course)
                return path.read_bytes()

        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Response(
            await run_in_threadpool(write),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{assignment}-{stamp}.csv"'},
        )

    return [
        Route("/", guarded(home)),
        Route("/upload", guarded(upload), methods=["POST"]),
        Route("/files/{assignment}/{name:path}", guarded(released)),
        Route("/data/{assignment}/{name}", guarded(data)),
        Route("/static/status.js", guarded(script)),
        Route("/class", guarded(klass)),
        Route("/class/{assignment}/export.csv", guarded(export)),
        Route("/class/{assignment}/{action}", guarded(action), methods=["POST"]),
    ]
