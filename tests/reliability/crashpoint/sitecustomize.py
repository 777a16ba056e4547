"""Crash points for the crash tests' child processes; imported at start-up only through their PYTHONPATH.

dlt moves a load package through its working directory one file operation at a time (write the extracted
files, commit the package, normalise it, move each job from new to started to completed, mark the package
loaded). With `CRASH_AT=<phase>:<n>` this audit hook SIGKILLs the process just before the n-th such file
operation of that phase: `extract` (building the package under normalize/), `normalize` (under load/new/)
or `load` (under load/normalized/); `CRASH_AT=<phase>:commit` kills it just before the rename that ends the
phase (the package moving to normalize/extracted/, load/normalized/ or load/loaded/), and
`CRASH_AT=<phase>:after-commit` just before the next file operation after that rename. `CRASH_AT=record:<file>`
only appends the phase of every operation to <file>, so a test can learn how many crash points each phase
has. Nothing else changes: the child runs the real `python -m pipelines load`, and the kill is a real
SIGKILL, as from the OOM killer or a power cut.
"""

import os
import signal
import sys

_FILE_EVENTS = {"open", "os.rename", "os.replace", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"}
_PIPELINE_DIR_MARKER = "/spotify_recently_played/"


def _phase(path: str) -> str | None:
    """Which dlt step a file operation on `path` belongs to, if any."""
    if _PIPELINE_DIR_MARKER not in path:
        return None
    if "/load/normalized/" in path:
        return "load"
    if "/load/new/" in path or "/normalize/extracted/" in path:
        return "normalize"  # writing the normalised package, then deleting the extracted one
    if "/normalize/" in path:
        return "extract"
    return None


# Where each phase's package lands when the phase is done.
_COMMITTED_TO = {"extract": "/normalize/extracted/", "normalize": "/load/normalized/", "load": "/load/loaded/"}


def _install(spec: str) -> None:
    target, _, argument = spec.partition(":")
    counts: dict[str, int] = {}
    committed = []

    def hook(event: str, args: tuple) -> None:
        if event not in _FILE_EVENTS or not args or not isinstance(args[0], str):
            return
        if event == "open" and not (len(args) > 1 and isinstance(args[1], str) and set(args[1]) & set("wax+")):
            return  # reads change nothing on disk
        if committed and _PIPELINE_DIR_MARKER in args[0]:
            os.kill(os.getpid(), signal.SIGKILL)  # the first operation after the phase's commit
        phase = _phase(args[0])
        if phase is None:
            return
        if target == "record":
            with open(argument, "a", encoding="utf-8") as log:
                log.write(phase + "\n")
            return
        counts[phase] = counts.get(phase, 0) + 1
        if phase != target:
            return
        is_commit = event == "os.rename" and _COMMITTED_TO[phase] in str(args[1])
        if argument == "commit" and is_commit:
            os.kill(os.getpid(), signal.SIGKILL)
        elif argument == "after-commit" and is_commit:
            committed.append(True)
        elif argument.isdigit() and counts[phase] == int(argument):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


if os.environ.get("CRASH_AT"):
    _install(os.environ["CRASH_AT"])
