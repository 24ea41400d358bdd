"""What the participant may have changed in how IPython runs code, checked around test cells.

A test cell runs in the participant's own kernel, after their code, so their code can change
what runs instead of the test: an AST or input transformer that rewrites it, an event
callback, a custom exception handler, a display, trace or exception hook, a replaced method
of the shell, the kernel or its messaging. Before the notebook's first cell, and before and
after every test cell, the grader asks the kernel for a fingerprint of those hooks and
compares it, in the grader, with the one taken before any participant code ran.

The question travels as a ``user_expressions`` entry of a silent, empty execute request:
IPython evaluates it directly (``InteractiveShell.user_expressions``), never through the
transformers, the event callbacks or the history. A changed hook is named in plain words of
ours (``describe``), never with text the notebook chose (a callback's name), because the
participant reads the result too.

Honest notebooks change some of this: ``%matplotlib inline`` and ``%load_ext autoreload``
register event callbacks, so a callback whose code lives in the installed environment
(read-only in the sandbox) is not a change; one defined by the notebook is.

This is advisory against a participant who reads this module: the fingerprint is computed
inside their process, so code that saved the original hooks can forge it. See
docs/architecture.md (trust boundary) for what remains.
"""

from __future__ import annotations

import ast
import asyncio
import json
import queue
import time
from collections.abc import Mapping
from typing import Any

#: Seconds the kernel gets to answer the grader's check of its hooks.
PROBE_TIMEOUT_S = 20.0

#: The most a fingerprint may weigh (its JSON, as the kernel's repr of a string).
MAX_FINGERPRINT_CHARS = 200_000

#: Computes ``out``: a JSON object, slot -> description. Run by ``exec`` inside the kernel.
_PROBE_CODE = r"""
import builtins as _b, json as _j, sys as _s, os as _o, sysconfig as _sc, threading as _t
from IPython import get_ipython as _g
_ip = _g()
_roots = set()
for _k in ("stdlib", "platstdlib", "purelib", "platlib"):
    _p = _sc.get_paths().get(_k)
    if _p:
        _roots.add(_o.path.realpath(_p))
for _p in (_s.prefix, _s.base_prefix, _s.exec_prefix):
    _roots.add(_o.path.realpath(_p))
_cwd = _o.path.realpath(_o.getcwd())
def _code(o):
    f = getattr(o, "__func__", o)
    c = getattr(f, "__code__", None)
    if c is None and not isinstance(o, type(len)):
        c = getattr(getattr(type(o), "__call__", None), "__code__", None)
    return f, c
def _d(o):
    f, c = _code(o)
    t = type(o)
    return "%x %x %x %s.%s" % (id(o) if not hasattr(o, "__func__") else id(o.__self__),
        id(f), id(c) if c is not None else 0, t.__module__, t.__qualname__)
def _trusted(o):
    f, c = _code(o)
    if c is None or type(o).__name__ == "partial":
        return False
    p = _o.path.realpath(c.co_filename)
    if p.startswith(_cwd) or not _o.path.isabs(c.co_filename):
        return False
    return any(p.startswith(r + _o.sep) for r in _roots)
def _m(out, obj, names, prefix):
    for n in names:
        own = getattr(obj, "__dict__", {}).get(n)
        cls = getattr(type(obj), n, None)
        f, c = _code(cls)
        out[prefix + n] = "%s %x %x" % ("-" if own is None else _d(own), id(f),
            id(c) if c is not None else 0)
def _l(out, name, seq):
    out[name] = " ".join(_d(x) for x in list(seq))
def _probe():
    out = {}
    _m(out, _ip, ("run_cell", "run_cell_async", "_run_cell", "run_ast_nodes", "run_code",
        "transform_cell", "transform_ast", "showtraceback", "_showtraceback", "showsyntaxerror",
        "showindentationerror", "get_exception_only", "ev", "ex", "user_expressions",
        "should_run_async", "set_custom_exc", "_get_exc_info", "excepthook", "run_line_magic",
        "run_cell_magic", "safe_execfile", "init_traceback_handlers"), "shell.")
    out["shell.class"] = _d(type(_ip))
    _l(out, "ast_transformers", _ip.ast_transformers)
    _l(out, "input_transformers_cleanup", _ip.input_transformers_cleanup)
    _l(out, "input_transformers_post", _ip.input_transformers_post)
    _tm = _ip.input_transformer_manager
    out["input_transformer_manager"] = _d(_tm)
    for _n in ("cleanup_transforms", "line_transforms", "token_transformers"):
        _l(out, "input_transformer_manager." + _n, getattr(_tm, _n, ()))
    _m(out, _tm, ("transform_cell", "do_token_transforms", "do_one_token_transform"),
        "input_transformer_manager.")
    out["compile"] = _d(_ip.compile)
    _m(out, _ip.compile, ("__call__", "ast_parse", "cache", "format_code_name"), "compile.")
    out["compile.flags"] = str(getattr(_ip.compile, "flags", ""))
    out["custom_exceptions"] = repr(tuple(id(x) for x in _ip.custom_exceptions))
    out["CustomTB"] = _d(_ip.CustomTB)
    out["InteractiveTB"] = _d(_ip.InteractiveTB)
    _m(out, _ip.InteractiveTB, ("structured_traceback", "stb2text", "__call__"), "InteractiveTB.")
    out["displayhook"] = _d(_ip.displayhook)
    _m(out, _ip.displayhook, ("__call__", "write_output_prompt", "write_format_data",
        "finish_displayhook", "compute_format_data", "start_displayhook"), "displayhook.")
    out["display_pub"] = _d(_ip.display_pub)
    _m(out, _ip.display_pub, ("publish", "clear_output"), "display_pub.")
    out["display_formatter"] = _d(_ip.display_formatter)
    _m(out, _ip.display_formatter, ("format",), "display_formatter.")
    _m(out, _ip.events, ("trigger", "register", "unregister"), "events.")
    out["events.callbacks"] = _d(_ip.events.callbacks)
    for _n, _cbs in sorted(_ip.events.callbacks.items()):
        out["event:" + str(_n)[:100]] = [[_d(x), _trusted(x)] for x in list(_cbs)]
    _k = getattr(_ip, "kernel", None)
    if _k is not None:
        out["kernel"] = _d(_k)
        _m(out, _k, ("do_execute", "execute_request", "dispatch_shell", "process_one",
            "send_response", "_publish_execute_input", "_publish_status"), "kernel.")
        out["kernel.shell_handlers"] = " ".join(
            "%s=%s" % (n, _d(h)) for n, h in sorted(getattr(_k, "shell_handlers", {}).items()))
        _se = getattr(_k, "session", None)
        out["session"] = _d(_se)
        _m(out, _se, ("send", "serialize", "sign", "msg", "feed_identities"), "session.")
        out["session.key"] = "%x" % hash(getattr(_se, "key", b""))
        out["iopub_socket"] = _d(getattr(_k, "iopub_socket", None))
        _m(out, getattr(_k, "iopub_socket", None), ("send", "send_multipart"), "iopub_socket.")
    for _n in ("displayhook", "excepthook", "breakpointhook", "unraisablehook", "stdout",
            "stderr", "stdin", "__displayhook__", "__excepthook__", "__stdout__", "__stderr__"):
        out["sys." + _n] = _d(getattr(_s, _n, None))
    for _n in ("stdout", "stderr"):
        _m(out, getattr(_s, _n, None), ("write", "flush", "_flush", "send_multipart"),
            "sys." + _n + ".")
    out["sys.trace"] = _d(_s.gettrace())
    out["sys.profile"] = _d(_s.getprofile())
    out["threading.trace"] = _d(getattr(_t, "_trace_hook", None))
    out["threading.profile"] = _d(getattr(_t, "_profile_hook", None))
    out["builtins"] = {n: "%x" % id(v) for n, v in list(vars(_b).items())
        if n not in ("_", "__", "___")}
    return _j.dumps(out)
import types as _ty
_mod = _ty.ModuleType(NAME)
_mod.probe = _probe
_s.modules[NAME] = _mod
out = _probe()
"""


def probe_expressions(name: str) -> tuple[str, str]:
    """The expressions the kernel evaluates: the first defines the probe (compiling it is
    most of its cost) as module ``name`` and answers; the second only calls it again. The
    name is random per run; a notebook that removes the module fails the check."""
    define = f"(lambda g: (exec({_PROBE_CODE!r}, g), g['out'])[1])({{'NAME': {name!r}}})"
    return define, f"__import__('sys').modules[{name!r}].probe()"


#: What each slot is, in words for the instructor and the participant.
_WORDS = {
    "shell.": "a method of IPython's shell ({})",
    "ast_transformers": "an IPython AST transformer",
    "input_transformers_cleanup": "an IPython input transformer",
    "input_transformers_post": "an IPython input transformer",
    "input_transformer_manager": "IPython's input transformation",
    "input_transformer_manager.cleanup_transforms": "an IPython input transformer",
    "input_transformer_manager.line_transforms": "an IPython input transformer",
    "input_transformer_manager.token_transformers": "an IPython input transformer",
    "compile": "IPython's compiler",
    "custom_exceptions": "IPython's custom exception handler",
    "CustomTB": "IPython's custom exception handler",
    "InteractiveTB": "IPython's traceback display",
    "displayhook": "IPython's display hook",
    "display_pub": "IPython's display publisher",
    "display_formatter": "IPython's display formatter",
    "events.": "IPython's event manager",
    "event:": "an IPython event callback ({})",
    "kernel": "the kernel's request handling",
    "session": "the kernel's messaging",
    "iopub_socket": "the kernel's messaging",
    "sys.stdout": "sys.stdout",
    "sys.stderr": "sys.stderr",
    "sys.trace": "a trace function (sys.settrace)",
    "sys.profile": "a profile function (sys.setprofile)",
    "threading.": "a thread trace or profile hook",
    "sys.": "a system hook (sys.{})",
    "builtins": "a built-in ({})",
}


def _words(slot: str, detail: str = "") -> str:
    for prefix, words in sorted(_WORDS.items(), key=lambda kv: -len(kv[0])):
        if slot == prefix or slot.startswith(prefix):
            name = detail or slot[len(prefix) :].split(".")[0]
            return words.format(name) if "{}" in words else words
    return "the kernel's state"


async def fingerprint(
    kc: Any, expression: str, timeout: float = PROBE_TIMEOUT_S
) -> dict[str, Any] | str:
    """The kernel's hooks, asked for through the kernel client ``kc`` in a silent, empty
    request whose ``user_expressions`` (``expression``, from :func:`probe_expressions`)
    IPython evaluates without its transformers; or a sentence saying why there are none."""
    try:
        msg_id = kc.execute(
            "",
            silent=True,
            store_history=False,
            user_expressions={"w": expression},
            allow_stdin=False,
        )
    except Exception:
        return parse_reply(None)
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            msg = kc.shell_channel.get_msg(timeout=remaining)
            if asyncio.iscoroutine(msg):
                msg = await msg
        except queue.Empty:
            break
        if (msg.get("parent_header") or {}).get("msg_id") == msg_id:
            return parse_reply(msg)
    return parse_reply(None)


def parse_reply(reply: Mapping[str, Any] | None) -> dict[str, Any] | str:
    """The fingerprint in an execute reply, or a sentence saying why there is none."""
    if not reply:
        return "the kernel did not answer the grader's check"
    content = reply.get("content", {})
    if content.get("status") != "ok":
        return "the kernel refused the grader's check"
    answer = (content.get("user_expressions") or {}).get("w")
    if not isinstance(answer, Mapping) or answer.get("status") != "ok":
        ename = str(answer.get("ename", "")) if isinstance(answer, Mapping) else ""
        known = ename if ename.isidentifier() and len(ename) < 40 else "an error"
        return f"the grader's check of the kernel failed ({known})"
    text = (answer.get("data") or {}).get("text/plain")
    if not isinstance(text, str) or len(text) > MAX_FINGERPRINT_CHARS:
        return "the grader's check of the kernel returned something else"
    try:
        value = json.loads(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "the grader's check of the kernel returned something else"
    if not isinstance(value, dict) or "builtins" not in value:
        return "the grader's check of the kernel returned something else"
    return value


def changes(baseline: Mapping[str, Any], now: Mapping[str, Any] | str) -> list[str]:
    """What differs from the baseline, each in words of ours; empty when nothing does."""
    if isinstance(now, str):
        return [now]
    found: set[str] = set()
    for slot in sorted(set(baseline) | set(now)):
        before, after = baseline.get(slot), now.get(slot)
        if slot == "builtins":
            before, after = before or {}, after if isinstance(after, dict) else {}
            for name in sorted(before):
                if after.get(name) != before[name]:
                    found.add(_words(slot, name if name.isidentifier() else "?"))
        elif slot.startswith("event:"):
            old = {entry[0] for entry in before or []}
            event = slot[len("event:") :]
            event = event if event.isidentifier() and len(event) < 40 else "?"
            for entry in after if isinstance(after, list) else []:
                well_formed = isinstance(entry, list) and len(entry) == 2
                if not well_formed or (entry[0] not in old and entry[1] is not True):
                    found.add(_words(slot, event))
        elif before != after:
            found.add(_words(slot))
    return sorted(found)
