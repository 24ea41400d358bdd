"""Starting the workshop service: the checks ``grade`` makes, the roster's instructor, the
graders, then uvicorn in the foreground (Ctrl-C stops it; a submission answered 202 is kept
in the database whatever happens)."""

from __future__ import annotations

from pathlib import Path

import click

from .config import Course, parse_size
from .errors import ConfigError
from .job import GradeSettings


def serve(
    course: Course,
    *,
    settings: GradeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    public_url: str = "",
    join_code: str = "",
    max_upload: str = "",
    workers: int | None = None,
    gpus: str = "none",
    per_gpu: int | None = None,
    backend: str = "local",
    scheduler: str | None = None,
) -> None:
    """Run the service for ``course`` until interrupted."""
    import uvicorn

    from .dispatch import Dispatcher
    from .jobqueue import Queue
    from .probe import require_sandbox
    from .roster import Roster
    from .schedule import DEFAULT_PER_GPU, check_backend, default_workers, parse_gpus
    from .service import Service, ServiceOptions
    from .webapp import create_app

    if bool(certfile) != bool(keyfile):
        raise ConfigError("--certfile and --keyfile go together; give both to serve HTTPS")
    gpu_list = parse_gpus(gpus)
    per_gpu = DEFAULT_PER_GPU if per_gpu is None else per_gpu
    workers = workers if workers is not None else default_workers(gpu_list, per_gpu)
    check_backend(backend, workers)
    if settings.sandbox:
        require_sandbox()
    if not course.assignments():
        raise ConfigError(
            f"no assignments in {course.root / 'source'}; serve from a course folder "
            "(--course-dir), or create one with 'autograder new'"
        )
    scheme = "https" if certfile else "http"
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = (public_url or f"{scheme}://{shown_host}:{port}").rstrip("/")
    options = ServiceOptions(
        public_url=public_url,
        join_code=join_code,
        max_upload=parse_size(max_upload) if max_upload else None,
        secure_cookies=scheme == "https" or public_url.startswith("https://"),
    )
    roster = Roster(course)
    queue = Queue(course.gradebook_url)
    dispatcher = Dispatcher(
        course,
        queue,
        settings=settings,
        workers=workers,
        backend=backend,
        scheduler=scheduler,
        gpus=gpu_list,
        per_gpu=per_gpu,
    )
    service = Service(course, roster=roster, queue=queue, options=options, notify=dispatcher.notify)
    service.on_stale_page = dispatcher.write_page
    instructors = [m for m in roster.members() if m.instructor and m.revoked_at is None]
    if not instructors:
        member, _ = roster.add(_free_name(roster), instructor=True)
        instructors = [member]
    click.echo(f"serving {course.root} at {base} ({workers} grader(s), backend {backend})")
    for member in instructors:
        click.echo(f"instructor {member.name}: token {roster.token_for(member)}")
        click.echo(f"  personal link: {base}/me?token={roster.token_for(member)}")
    click.echo("participants: 'autograder roster add NAME...' prints their links; Ctrl-C stops")
    config = uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        access_log=False,
        log_level="warning",
        proxy_headers=True,
        timeout_graceful_shutdown=5,
    )
    dispatcher.start()
    try:
        uvicorn.Server(config).run()
    finally:
        dispatcher.stop()


def _free_name(roster: object) -> str:
    name, n = "instructor", 1
    while roster.get(name) is not None:  # type: ignore[attr-defined]
        n += 1
        name = f"instructor{n}"
    return name
