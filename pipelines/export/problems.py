"""What can be wrong with an export file, said so that the user can find it: the file, the row, the field."""

from __future__ import annotations

from pipelines.errors import PipelineError


class ExportFileError(PipelineError):
    """A file of the export cannot be imported; nothing of it is loaded.

    Attributes:
        file: The file as shown to the user (zip name / member path, or path).
        row: 1-based position of the offending play in the file's list, when known.
        problem: What is wrong, in words.
    """

    def __init__(self, file: str, row: int | None, problem: str) -> None:
        self.file = file
        self.row = row
        self.problem = problem
        where = f"{file}, row {row}" if row is not None else file
        super().__init__(f"{where}: {problem}")


class OtherListenerError(ExportFileError):
    """A file of another listener's export: its plays name another Spotify user (`username`, which older exports
    such as `endsong_*.json` carry). Nothing of it is loaded; unlike a broken file, it never stops the import's
    other files.

    Attributes:
        username: The Spotify user the file's plays name.
        user_id: The Spotify user the import is for.
        account: The account asked for (`--account`), when there is one.
    """

    def __init__(self, file: str, row: int | None, *, username: str, user_id: str, account: str | None) -> None:
        self.username = username
        self.user_id = user_id
        self.account = account
        asked = f"account {account} (Spotify user {user_id})" if account else f"Spotify user {user_id}"
        super().__init__(
            file,
            row,
            f"looks like Spotify user {username}'s export (its plays' `username`), not that of {asked}: "
            "nothing imported from it; import it with that listener's --account",
        )


class ImportRejectedError(PipelineError):
    """One or more files were rejected, so nothing was imported (the database is unchanged)."""

    def __init__(self, rejected: list[ExportFileError]) -> None:
        self.rejected = rejected
        first = rejected[0]
        more = f" (and {len(rejected) - 1} more file(s))" if len(rejected) > 1 else ""
        super().__init__(
            f"{first}{more}. Nothing was imported: fix or remove the file, or pass --skip-invalid-files "
            "to import the other files"
        )
